//! The QEMU driver's QMP client over a unix socket (greeting, capabilities negotiation, any
//! command, events; kiln keeps its own because the `qapi` crate drops the connection on events it
//! does not know), and [`QmpKeyboard`], which types key strokes with `input-send-event`. Messages
//! are serde types; no JSON is formatted by hand.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use boot_commands::{qmp_events, KeySink, KeyStroke, SinkError, QMP_DEFAULT_KEY_INTERVAL};

/// A QMP failure. Command arguments (which may hold passwords) never appear in messages.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// Connecting to the socket failed.
    #[error("cannot connect to QEMU's QMP socket {path}; is QEMU running with -qmp unix:{path},server,nowait?")]
    Connect {
        /// The socket path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("QMP connection failed")]
    Io(#[from] std::io::Error),
    /// QEMU closed the connection (it probably exited).
    #[error("QEMU closed the QMP connection; check whether QEMU exited")]
    Closed,
    /// QEMU sent something that is not QMP.
    #[error("unexpected QMP message from QEMU")]
    Protocol(#[source] serde_json::Error),
    /// The command failed in QEMU.
    #[error("QMP command `{command}` failed: {class}: {desc}")]
    Command {
        /// The command name.
        command: String,
        /// QEMU's error class, such as `GenericError`.
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// The command's return value did not have the expected shape.
    #[error("QMP command `{command}` returned an unexpected value")]
    Return {
        /// The command name.
        command: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// QEMU's version from the QMP greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct QemuVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Micro version.
    pub micro: u32,
}

/// An asynchronous event such as `SHUTDOWN` or `STOP`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct QmpEvent {
    /// Event name.
    pub event: String,
    /// Event data, when the event has any.
    #[serde(default)]
    pub data: Value,
}

#[derive(Deserialize)]
struct Greeting {
    #[serde(rename = "QMP")]
    qmp: GreetingBody,
}

#[derive(Deserialize)]
struct GreetingBody {
    version: GreetingVersion,
}

#[derive(Deserialize)]
struct GreetingVersion {
    qemu: QemuVersion,
}

#[derive(Serialize)]
struct Request<'a, A> {
    execute: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a A>,
    id: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    class: String,
    desc: String,
}

/// Any message QEMU sends after the greeting: a command's return or error, or an event.
#[derive(Deserialize)]
#[serde(untagged)]
enum Message {
    Return {
        #[serde(rename = "return")]
        value: Value,
        id: Option<u64>,
    },
    Error {
        error: ErrorBody,
        id: Option<u64>,
    },
    Event(QmpEvent),
}

/// A connected QMP session, in command mode.
#[derive(Debug)]
pub struct QmpClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    events: VecDeque<QmpEvent>,
    version: QemuVersion,
}

impl QmpClient {
    /// Connects, reads the greeting and negotiates capabilities.
    pub async fn connect(path: &Path) -> Result<Self, QmpError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| QmpError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        let (read, writer) = stream.into_split();
        let mut reader = BufReader::new(read);
        let line = read_line(&mut reader).await?;
        let greeting: Greeting = serde_json::from_str(&line).map_err(QmpError::Protocol)?;
        let mut client = QmpClient {
            reader,
            writer,
            next_id: 1,
            events: VecDeque::new(),
            version: greeting.qmp.version.qemu,
        };
        client.execute::<Value>("qmp_capabilities").await?;
        Ok(client)
    }

    /// QEMU's version, from the greeting.
    pub fn version(&self) -> QemuVersion {
        self.version
    }

    /// Runs a command without arguments, such as `quit` or `query-status`.
    pub async fn execute<R: DeserializeOwned>(&mut self, command: &str) -> Result<R, QmpError> {
        self.request::<(), R>(command, None).await
    }

    /// Runs a command with arguments, such as `change-vnc-password` or `input-send-event`.
    pub async fn execute_with<A: Serialize + Sync, R: DeserializeOwned>(
        &mut self,
        command: &str,
        arguments: &A,
    ) -> Result<R, QmpError> {
        self.request(command, Some(arguments)).await
    }

    async fn request<A: Serialize + Sync, R: DeserializeOwned>(
        &mut self,
        command: &str,
        arguments: Option<&A>,
    ) -> Result<R, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = serde_json::to_vec(&Request {
            execute: command,
            arguments,
            id,
        })
        .map_err(QmpError::Protocol)?;
        line.push(b'\n');
        self.writer.write_all(&line).await.map_err(closed_or_io)?;
        loop {
            match self.read_message().await? {
                Message::Event(e) => self.events.push_back(e),
                Message::Return {
                    value,
                    id: Some(got),
                } if got == id => {
                    return serde_json::from_value(value).map_err(|source| QmpError::Return {
                        command: command.to_string(),
                        source,
                    })
                }
                Message::Error {
                    error,
                    id: Some(got),
                } if got == id => {
                    return Err(QmpError::Command {
                        command: command.to_string(),
                        class: error.class,
                        desc: error.desc,
                    })
                }
                // A reply to an earlier, abandoned request (its future was dropped).
                Message::Return { .. } | Message::Error { .. } => {}
            }
        }
    }

    /// The next event, waiting for one if none is queued.
    pub async fn next_event(&mut self) -> Result<QmpEvent, QmpError> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(e);
            }
            match self.read_message().await? {
                Message::Event(e) => return Ok(e),
                Message::Return { .. } | Message::Error { .. } => {}
            }
        }
    }

    async fn read_message(&mut self) -> Result<Message, QmpError> {
        let line = read_line(&mut self.reader).await?;
        serde_json::from_str(&line).map_err(QmpError::Protocol)
    }
}

async fn read_line(reader: &mut BufReader<OwnedReadHalf>) -> Result<String, QmpError> {
    let mut line = String::new();
    match reader.read_line(&mut line).await {
        Ok(0) => Err(QmpError::Closed),
        Ok(_) => Ok(line),
        Err(e) => Err(closed_or_io(e)),
    }
}

/// A reset or broken connection means QEMU went away (after `quit`, or it crashed).
fn closed_or_io(e: std::io::Error) -> QmpError {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => QmpError::Closed,
        _ => QmpError::Io(e),
    }
}

/// Types key strokes through a [`QmpClient`] with `input-send-event`.
#[derive(Debug)]
pub struct QmpKeyboard<'a>(pub &'a mut QmpClient);

#[async_trait::async_trait]
impl KeySink for QmpKeyboard<'_> {
    fn name(&self) -> &'static str {
        "QMP"
    }

    fn default_key_interval(&self) -> Duration {
        QMP_DEFAULT_KEY_INTERVAL
    }

    async fn send(&mut self, strokes: &[KeyStroke]) -> Result<(), SinkError> {
        self.0
            .execute_with::<_, Value>("input-send-event", &qmp_events(strokes))
            .await
            .map_err(SinkError::new)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_serialization() {
        let r = Request::<()> {
            execute: "quit",
            arguments: None,
            id: 3,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"execute": "quit", "id": 3})
        );
    }

    #[test]
    fn message_kinds() {
        let m: Message = serde_json::from_str(r#"{"return": {}, "id": 1}"#).unwrap();
        assert!(matches!(m, Message::Return { id: Some(1), .. }));
        let m: Message =
            serde_json::from_str(r#"{"error": {"class": "GenericError", "desc": "no"}, "id": 2}"#)
                .unwrap();
        assert!(matches!(m, Message::Error { id: Some(2), .. }));
        let m: Message = serde_json::from_str(
            r#"{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}"#,
        )
        .unwrap();
        assert!(matches!(m, Message::Event(QmpEvent { ref event, .. }) if event == "STOP"));
        assert!(serde_json::from_str::<Message>(r#"{"hello": 1}"#).is_err());
    }

    #[tokio::test]
    async fn connect_to_missing_socket_says_what_to_check() {
        let dir = tempfile::tempdir().unwrap();
        let e = QmpClient::connect(&dir.path().join("none.sock"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("-qmp unix:"), "{e}");
    }
}
