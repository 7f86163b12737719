//! A blocking client of the control socket.

use crate::proto::{Command, CtlError, Request, Response, VERSION};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest response line accepted (a large `conns` answer fits).
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;
/// Default time to wait for each answer: longer than the server's own
/// reply timeout, so the daemon's `timeout` answer arrives first.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {}: {source} (is pylon running with this control socket?)", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Daemon(#[from] CtlError),
    #[error("unexpected answer from the daemon: {0}")]
    BadResponse(String),
    #[error("the daemon closed the connection without answering")]
    Closed,
}

/// One connection to the daemon; requests go one at a time.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let connect_err = |source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        };
        let writer = UnixStream::connect(path).map_err(connect_err)?;
        let reader = writer.try_clone().map_err(connect_err)?;
        let client = Client {
            reader: BufReader::new(reader),
            writer,
            next_id: 1,
        };
        client.set_timeout(DEFAULT_TIMEOUT)?;
        Ok(client)
    }

    /// How long to wait for the daemon to take a request and answer it.
    pub fn set_timeout(&self, timeout: Duration) -> Result<(), ClientError> {
        self.writer.set_read_timeout(Some(timeout))?;
        self.writer.set_write_timeout(Some(timeout))?;
        Ok(())
    }

    /// Sends `cmd` and returns the answer's data, or its error as
    /// [`ClientError::Daemon`].
    pub fn call(&mut self, cmd: Command) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.writer.write_all(&Request::new(id, cmd).to_line())?;
        let mut line = Vec::new();
        let limit = MAX_RESPONSE as u64 + 1;
        let n = self
            .reader
            .by_ref()
            .take(limit)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        if line.last() != Some(&b'\n') {
            return Err(ClientError::BadResponse(if n as u64 >= limit {
                format!("longer than {MAX_RESPONSE} bytes")
            } else {
                "cut off".into()
            }));
        }
        let response: Response =
            serde_json::from_slice(&line).map_err(|e| ClientError::BadResponse(e.to_string()))?;
        if response.v != VERSION {
            return Err(ClientError::BadResponse(format!(
                "protocol version {} (this pylonctl speaks {VERSION})",
                response.v
            )));
        }
        // An error about the request itself may carry no id.
        if response.id.is_some_and(|r| r != id) {
            return Err(ClientError::BadResponse(format!(
                "answer to request {:?}, expected {id}",
                response.id
            )));
        }
        Ok(response.into_result()?)
    }

    /// [`call`](Client::call), with the data read as `T`.
    pub fn request<T: DeserializeOwned>(&mut self, cmd: Command) -> Result<T, ClientError> {
        let value = self.call(cmd)?;
        serde_json::from_value(value).map_err(|e| ClientError::BadResponse(e.to_string()))
    }
}
