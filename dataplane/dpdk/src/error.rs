//! The crate's error type.

use std::ffi::CStr;

/// Why a DPDK operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A DPDK function reported an error; `message` is `rte_strerror(errno)`,
    /// which also knows DPDK's own codes beyond the system errno range.
    #[error("{call} failed: {message} (errno {errno})")]
    Dpdk {
        /// The DPDK function that failed, e.g. `rte_eth_dev_configure`.
        call: &'static str,
        /// The positive error number (`rte_errno`, or the negated return
        /// value of functions that return `-errno`).
        errno: i32,
        /// The text DPDK gives for `errno`.
        message: String,
    },
    /// [`Eal::init`](crate::Eal::init) was called a second time: DPDK can
    /// initialise the EAL only once per process, even after cleanup.
    #[error("the EAL was already initialised in this process")]
    AlreadyInitialised,
    /// The EAL is not running: not initialised yet, or [`Eal`](crate::Eal)
    /// was dropped. DPDK calls are undefined then, so none is made.
    #[error("the EAL is not running (not initialised, or already shut down)")]
    EalNotRunning,
    /// An argument was rejected before reaching DPDK, because DPDK would not
    /// check it and would read out of bounds or dereference garbage.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The port cannot do this now, e.g. it is asked to stop while a queue
    /// handle may still be polling it.
    #[error("port {port}: {reason}")]
    PortBusy {
        /// The port id.
        port: u16,
        /// What is in the way.
        reason: &'static str,
    },
}

/// The crate's result type; the error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds [`Error::Dpdk`] for `call` failing with the positive `errno`.
    pub(crate) fn dpdk(call: &'static str, errno: i32) -> Self {
        // SAFETY: rte_strerror accepts any integer and returns a pointer to
        // a NUL-terminated string (static, or in a thread-local buffer that
        // stays valid until this thread's next call); it is copied at once.
        let message = unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(errno)) }
            .to_string_lossy()
            .into_owned();
        Error::Dpdk {
            call,
            errno,
            message,
        }
    }

    /// Builds [`Error::Dpdk`] from the calling thread's `rte_errno`, for
    /// functions that return NULL or -1 on failure.
    pub(crate) fn last(call: &'static str) -> Self {
        // SAFETY: pylon_errno only reads the thread-local rte_errno.
        Self::dpdk(call, unsafe { dpdk_sys::pylon_errno() })
    }
}

/// Maps DPDK's `0 or -errno` return convention to a [`Result`].
pub(crate) fn check(call: &'static str, ret: i32) -> Result<i32> {
    if ret < 0 {
        Err(Error::dpdk(call, -ret))
    } else {
        Ok(ret)
    }
}
