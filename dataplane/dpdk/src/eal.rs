//! The EAL's lifetime, lcores, worker launch and the TSC clock.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::ptr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use dpdk_sys as sys;

use crate::error::{Error, Result};

/// Linux's `EBUSY`, which `rte_eal_remote_launch` returns negated when the
/// lcore is still running an earlier job.
const EBUSY: c_int = 16;

/// `rte_lcore_id()` of a thread that is not an EAL lcore (DPDK's
/// `LCORE_ID_ANY`, a macro bindgen does not export).
pub const LCORE_ID_ANY: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Uninit,
    Running,
    Finished,
}

/// Process-wide EAL bookkeeping: DPDK itself tracks neither who still uses
/// the EAL nor whether it was cleaned up.
struct State {
    phase: Phase,
    /// Live [`EalRef`]s: mempools, ports, queues, launched closures.
    refs: usize,
}

static STATE: Mutex<State> = Mutex::new(State {
    phase: Phase::Uninit,
    refs: 0,
});

/// Serialises `rte_eal_remote_launch`: it checks that the lcore is idle and
/// then writes the job into it without a lock, so two concurrent launches on
/// one lcore would race.
static LAUNCH: Mutex<()> = Mutex::new(());

/// Locks [`STATE`]. It holds plain counters that are valid at every point,
/// so a panic while it was held leaves nothing to repair.
fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The initialised EAL (`rte_eal_init`); at most one per process, ever.
///
/// Dropping it calls `rte_eal_cleanup`, after which DPDK allows no call at
/// all; so if a [`Mempool`](crate::Mempool), [`Port`](crate::Port), queue or
/// launched closure is still alive, the cleanup is skipped and left to the
/// process exit. It is neither `Send` nor `Sync`: the thread that
/// initialised the EAL is its main lcore, and teardown belongs there.
#[derive(Debug)]
pub struct Eal {
    _main_lcore_only: PhantomData<*const ()>,
}

impl Eal {
    /// Initialises the EAL with command-line style arguments; `args[0]` is
    /// the program name, as in `argv`.
    ///
    /// The calling thread becomes the main lcore. The argument strings are
    /// leaked on purpose: EAL may keep pointers into `argv`, and it is a few
    /// bytes once per process.
    pub fn init(args: &[String]) -> Result<Eal> {
        if args.is_empty() {
            return Err(Error::InvalidArgument(
                "EAL arguments must start with the program name".into(),
            ));
        }
        let strings = args
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidArgument(format!("EAL argument contains NUL: {e}")))?;
        let argc = c_int::try_from(strings.len())
            .map_err(|_| Error::InvalidArgument("too many EAL arguments".into()))?;

        let mut st = state();
        if st.phase != Phase::Uninit {
            return Err(Error::AlreadyInitialised);
        }
        let argv: &mut [*mut c_char] = Vec::leak(
            strings
                .into_iter()
                .map(CString::into_raw)
                .chain([ptr::null_mut()])
                .collect(),
        );
        // SAFETY: argv holds argc valid NUL-terminated strings followed by
        // NULL, all leaked so they outlive any pointer EAL keeps; STATE is
        // locked and Uninit, so no other rte_eal_init runs in this process.
        let ret = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(Error::last("rte_eal_init"));
        }
        st.phase = Phase::Running;
        Ok(Eal {
            _main_lcore_only: PhantomData,
        })
    }

    /// The EAL's runtime directory (`/var/run/dpdk/<file-prefix>` for
    /// root). DPDK leaves it behind on exit, so whoever picked the prefix
    /// removes it.
    pub fn runtime_dir(&self) -> PathBuf {
        // SAFETY: the EAL is initialised (self exists); the function returns
        // a pointer to a static NUL-terminated buffer, copied at once.
        let dir = unsafe { CStr::from_ptr(sys::rte_eal_get_runtime_dir()) };
        PathBuf::from(dir.to_string_lossy().into_owned())
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        let mut st = state();
        st.phase = Phase::Finished;
        if st.refs == 0 {
            // SAFETY: the EAL was initialised and no EalRef exists, so no
            // DPDK object of this crate is alive and none can be made any
            // more (phase is Finished, under the lock). Its only error is
            // "not everything was released", which changes nothing here.
            unsafe { sys::rte_eal_cleanup() };
        }
    }
}

/// A counted claim that the EAL stays initialised: [`Eal`]'s drop skips
/// `rte_eal_cleanup` while one exists.
#[derive(Debug)]
pub(crate) struct EalRef(());

impl EalRef {
    /// Claims the EAL, failing unless it is initialised and not dropped.
    pub(crate) fn acquire() -> Result<EalRef> {
        let mut st = state();
        if st.phase != Phase::Running {
            return Err(Error::EalNotRunning);
        }
        st.refs += 1;
        Ok(EalRef(()))
    }
}

impl Clone for EalRef {
    fn clone(&self) -> Self {
        // The EAL is alive because self is, whatever the phase.
        state().refs += 1;
        EalRef(())
    }
}

impl Drop for EalRef {
    fn drop(&mut self) {
        state().refs -= 1;
    }
}

/// The calling thread's lcore id (`rte_lcore_id`), or [`LCORE_ID_ANY`] for
/// a thread that is not an EAL lcore (such a thread has no mempool cache).
pub fn lcore_id() -> u32 {
    // SAFETY: reads a thread-local variable; valid on any thread, at any time.
    unsafe { sys::pylon_lcore_id() }
}

/// The main lcore's id (`rte_get_main_lcore`): the thread that ran
/// [`Eal::init`].
pub fn main_lcore() -> u32 {
    // SAFETY: reads a field of EAL's static configuration, which exists
    // before init and survives cleanup.
    unsafe { sys::rte_get_main_lcore() }
}

/// The enabled worker lcores (every EAL lcore except the main one), in id
/// order: the lcores [`launch`] accepts. Empty when the EAL is not running
/// (before init, DPDK's zeroed role table would report every lcore).
pub fn worker_lcores() -> Vec<u32> {
    let mut lcores = Vec::new();
    let Ok(_eal) = EalRef::acquire() else {
        return lcores;
    };
    // Starting from u32::MAX makes DPDK's `i + 1` wrap to lcore 0, exactly
    // as its own RTE_LCORE_FOREACH_WORKER macro does.
    let mut i = u32::MAX;
    loop {
        // SAFETY: reads EAL's static lcore roles; any `i` is accepted.
        i = unsafe { sys::rte_get_next_lcore(i, 1, 0) };
        if i >= sys::RTE_MAX_LCORE {
            return lcores;
        }
        lcores.push(i);
    }
}

/// The TSC frequency in Hz (`rte_get_tsc_hz`), measured by EAL at init;
/// 0 before [`Eal::init`].
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a static variable.
    unsafe { sys::rte_get_tsc_hz() }
}

/// The TSC counter (`rte_get_tsc_cycles`): the cheap clock of the fast path.
pub fn tsc() -> u64 {
    // SAFETY: executes rdtsc; no memory is touched.
    unsafe { sys::pylon_get_tsc_cycles() }
}

/// The CPU's spin-wait hint (`rte_pause`), for busy-wait loops.
pub fn pause() {
    // SAFETY: executes the pause instruction; no memory is touched.
    unsafe { sys::pylon_pause() }
}

/// What a worker lcore runs: the closure, and the claim that keeps the EAL
/// initialised while it runs.
struct Job<F> {
    f: F,
    _eal: EalRef,
}

/// The C entry point `rte_eal_remote_launch` calls on the worker lcore.
///
/// A panic must not unwind into C. It aborts the process instead of
/// returning an error code: a worker that silently stopped would blackhole
/// its share of the traffic, while a dead process lets the standby take the
/// VIP over.
unsafe extern "C" fn trampoline<F>(arg: *mut c_void) -> c_int
where
    F: FnOnce() -> i32 + Send + 'static,
{
    // SAFETY: arg is the Box<Job<F>> that `launch` leaked for this call;
    // EAL passes it to exactly one call of this function.
    let job = unsafe { Box::from_raw(arg.cast::<Job<F>>()) };
    let Job { f, _eal } = *job;
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(ret) => ret,
        Err(_) => std::process::abort(),
    }
}

/// Runs `f` on the worker lcore `lcore` (`rte_eal_remote_launch`); its
/// return value is collected by [`wait_lcore`].
///
/// Fails if the EAL is not running, `lcore` is not an enabled worker lcore
/// (DPDK does not check and would index out of bounds or write to a closed
/// pipe), or the lcore is still busy with an earlier closure. A panic in
/// `f` aborts the process (see the trampoline for why).
pub fn launch<F>(lcore: u32, f: F) -> Result<()>
where
    F: FnOnce() -> i32 + Send + 'static,
{
    let eal = EalRef::acquire()?;
    if lcore >= sys::RTE_MAX_LCORE || lcore == main_lcore() {
        return Err(Error::InvalidArgument(format!(
            "lcore {lcore} is not a worker lcore"
        )));
    }
    // SAFETY: lcore < RTE_MAX_LCORE, the bound of EAL's role table.
    if unsafe { sys::rte_lcore_is_enabled(lcore) } == 0 {
        return Err(Error::InvalidArgument(format!(
            "lcore {lcore} is not enabled"
        )));
    }
    let job = Box::into_raw(Box::new(Job { f, _eal: eal }));
    let ret = {
        let _serial = LAUNCH.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: lcore is an enabled worker lcore and the EAL is running
        // (job holds an EalRef); trampoline::<F> matches job's type and
        // takes ownership of it exactly once if the launch succeeds.
        unsafe { sys::rte_eal_remote_launch(Some(trampoline::<F>), job.cast(), lcore) }
    };
    match ret {
        0 => Ok(()),
        r if r == -EBUSY => {
            // SAFETY: on EBUSY, EAL returned before handing the job to the
            // worker, so ownership never left this function.
            drop(unsafe { Box::from_raw(job) });
            Err(Error::dpdk("rte_eal_remote_launch", EBUSY))
        }
        // Any other failure is a pipe error after the job was published:
        // the worker may or may not run it, so the job is leaked rather
        // than risk a double free.
        r => Err(Error::dpdk("rte_eal_remote_launch", -r)),
    }
}

/// Waits until `lcore` has finished its closure (`rte_eal_wait_lcore`) and
/// returns the closure's return value; returns 0 at once for an lcore that
/// is idle.
pub fn wait_lcore(lcore: u32) -> Result<i32> {
    if lcore >= sys::RTE_MAX_LCORE {
        return Err(Error::InvalidArgument(format!(
            "lcore {lcore} is out of range"
        )));
    }
    // SAFETY: lcore < RTE_MAX_LCORE, the bound of EAL's lcore table; the
    // function only polls that entry's state and reads its result.
    Ok(unsafe { sys::rte_eal_wait_lcore(lcore) })
}
