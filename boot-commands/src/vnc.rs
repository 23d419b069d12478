//! An RFB (VNC) client that only types: protocol 3.3, 3.7 or 3.8 handshake, None or VNC-password
//! (DES challenge) security, then `KeyEvent` messages. It never asks for the framebuffer.

use std::time::Duration;

use des::cipher::{BlockCipherEncrypt, KeyInit};
use des::Des;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::encode::{rfb_key_event, KeyStroke};
use crate::typing::{KeySink, SinkError};

/// Packer's VNC default: 100 ms after every key event.
pub const VNC_DEFAULT_KEY_INTERVAL: Duration = Duration::from_millis(100);

const SECURITY_NONE: u8 = 1;
const SECURITY_VNC: u8 = 2;

/// A VNC failure. The password never appears in messages.
#[derive(Debug, thiserror::Error)]
pub enum VncError {
    /// Connecting or talking to the server failed.
    #[error("VNC connection failed")]
    Io(#[from] std::io::Error),
    /// The server does not speak RFB.
    #[error("the VNC server sent an invalid protocol version {0:?}")]
    BadVersion(String),
    /// The server refused the connection, with its reason.
    #[error("the VNC server refused the connection: {0}")]
    Refused(String),
    /// No security type both sides support.
    #[error("the VNC server offers security types {offered:?}; kiln supports None (1) and VNC password (2){hint}")]
    NoCommonSecurity {
        /// What the server offered.
        offered: Vec<u8>,
        /// What to do.
        hint: &'static str,
    },
    /// Authentication failed.
    #[error("VNC authentication failed: {0}; check the VNC password")]
    AuthFailed(String),
}

/// An RFB protocol version the client can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RfbVersion {
    /// 3.3: the server picks the security type.
    V3_3,
    /// 3.7: the client picks; no result message for None.
    V3_7,
    /// 3.8: the client picks; always a result, with a reason on failure.
    V3_8,
}

/// A connected VNC session that types key strokes.
#[derive(Debug)]
pub struct VncKeyboard {
    stream: TcpStream,
    version: RfbVersion,
    name: String,
}

impl VncKeyboard {
    /// Connects and completes the handshake, with VNC-password security when `password` is set.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        password: Option<&str>,
    ) -> Result<Self, VncError> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut banner = [0u8; 12];
        stream.read_exact(&mut banner).await?;
        let version = parse_version(&banner)?;
        let reply: &[u8; 12] = match version {
            RfbVersion::V3_3 => b"RFB 003.003\n",
            RfbVersion::V3_7 => b"RFB 003.007\n",
            RfbVersion::V3_8 => b"RFB 003.008\n",
        };
        stream.write_all(reply).await?;

        let security = if version == RfbVersion::V3_3 {
            let t = stream.read_u32().await?;
            if t == 0 {
                return Err(VncError::Refused(read_reason(&mut stream).await?));
            }
            u8::try_from(t).map_err(|_| VncError::NoCommonSecurity {
                offered: Vec::new(),
                hint: "",
            })?
        } else {
            let n = stream.read_u8().await?;
            if n == 0 {
                return Err(VncError::Refused(read_reason(&mut stream).await?));
            }
            let mut offered = vec![0u8; usize::from(n)];
            stream.read_exact(&mut offered).await?;
            let choice = choose_security(&offered, password.is_some())?;
            stream.write_u8(choice).await?;
            choice
        };
        match security {
            SECURITY_NONE => {}
            SECURITY_VNC => {
                let Some(password) = password else {
                    return Err(VncError::NoCommonSecurity {
                        offered: vec![SECURITY_VNC],
                        hint: "; the server wants a password and none was given",
                    });
                };
                let mut challenge = [0u8; 16];
                stream.read_exact(&mut challenge).await?;
                stream
                    .write_all(&vnc_auth_response(password, &challenge))
                    .await?;
            }
            other => {
                return Err(VncError::NoCommonSecurity {
                    offered: vec![other],
                    hint: "",
                })
            }
        }
        let has_result = security == SECURITY_VNC || version == RfbVersion::V3_8;
        if has_result && stream.read_u32().await? != 0 {
            let reason = if version == RfbVersion::V3_8 {
                read_reason(&mut stream).await?
            } else {
                "the server gave no reason".to_string()
            };
            return Err(VncError::AuthFailed(reason));
        }
        // ClientInit with shared = 1, so a viewer the user opened stays connected.
        stream.write_u8(1).await?;
        let mut init = [0u8; 20];
        stream.read_exact(&mut init).await?;
        let name_len = stream.read_u32().await?;
        let mut name = Vec::new();
        (&mut stream)
            .take(u64::from(name_len))
            .read_to_end(&mut name)
            .await?;
        Ok(VncKeyboard {
            stream,
            version,
            name: String::from_utf8_lossy(&name).into_owned(),
        })
    }

    /// The protocol version agreed with the server.
    pub fn version(&self) -> RfbVersion {
        self.version
    }

    /// The desktop name the server sent.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[async_trait::async_trait]
impl KeySink for VncKeyboard {
    fn name(&self) -> &'static str {
        "VNC"
    }

    fn default_key_interval(&self) -> Duration {
        VNC_DEFAULT_KEY_INTERVAL
    }

    async fn send(&mut self, strokes: &[KeyStroke]) -> Result<(), SinkError> {
        let bytes: Vec<u8> = strokes.iter().flat_map(rfb_key_event).collect();
        self.stream
            .write_all(&bytes)
            .await
            .map_err(|e| SinkError::new(VncError::from(e)))?;
        Ok(())
    }
}

/// Picks the version to speak from the server's banner: the highest of 3.3/3.7/3.8 not above the
/// server's (RFC 6143 §7.1.1: unknown 3.x below 3.7 means 3.3).
fn parse_version(banner: &[u8; 12]) -> Result<RfbVersion, VncError> {
    let bad = || VncError::BadVersion(String::from_utf8_lossy(banner).trim_end().to_string());
    let text = std::str::from_utf8(banner).map_err(|_| bad())?;
    let rest = text.strip_prefix("RFB ").ok_or_else(bad)?;
    let rest = rest.strip_suffix('\n').ok_or_else(bad)?;
    let (major, minor) = rest.split_once('.').ok_or_else(bad)?;
    let major: u32 = major.parse().map_err(|_| bad())?;
    let minor: u32 = minor.parse().map_err(|_| bad())?;
    match (major, minor) {
        (3, m) if m >= 8 => Ok(RfbVersion::V3_8),
        (3, 7) => Ok(RfbVersion::V3_7),
        (3, _) => Ok(RfbVersion::V3_3),
        (m, _) if m > 3 => Ok(RfbVersion::V3_8),
        _ => Err(bad()),
    }
}

fn choose_security(offered: &[u8], have_password: bool) -> Result<u8, VncError> {
    if have_password && offered.contains(&SECURITY_VNC) {
        Ok(SECURITY_VNC)
    } else if offered.contains(&SECURITY_NONE) {
        Ok(SECURITY_NONE)
    } else {
        Err(VncError::NoCommonSecurity {
            offered: offered.to_vec(),
            hint: if offered.contains(&SECURITY_VNC) {
                "; the server wants a password and none was given"
            } else {
                ""
            },
        })
    }
}

async fn read_reason(stream: &mut TcpStream) -> Result<String, VncError> {
    let len = stream.read_u32().await?;
    let mut reason = Vec::new();
    stream
        .take(u64::from(len.min(4096)))
        .read_to_end(&mut reason)
        .await?;
    Ok(String::from_utf8_lossy(&reason).into_owned())
}

/// VNC authentication: the challenge encrypted with DES, keyed by the password's first 8 bytes
/// (zero-padded) with the bits of each byte reversed, as every VNC implementation does.
fn vnc_auth_response(password: &str, challenge: &[u8; 16]) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(password.bytes()) {
        *k = b.reverse_bits();
    }
    let cipher = Des::new(&key.into());
    let mut out = [0u8; 16];
    for (half, src) in out.chunks_exact_mut(8).zip(challenge.chunks_exact(8)) {
        let mut block = [0u8; 8];
        block.copy_from_slice(src);
        let mut block = block.into();
        cipher.encrypt_block(&mut block);
        half.copy_from_slice(&block);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let v = |s: &str| parse_version(s.as_bytes().try_into().unwrap());
        assert_eq!(v("RFB 003.008\n").unwrap(), RfbVersion::V3_8);
        assert_eq!(v("RFB 003.889\n").unwrap(), RfbVersion::V3_8);
        assert_eq!(v("RFB 003.007\n").unwrap(), RfbVersion::V3_7);
        assert_eq!(v("RFB 003.005\n").unwrap(), RfbVersion::V3_3);
        assert_eq!(v("RFB 004.001\n").unwrap(), RfbVersion::V3_8);
        assert!(v("HTTP/1.1 200").is_err());
        assert!(v("RFB 002.000\n").is_err());
    }

    #[test]
    fn security_choice() {
        assert_eq!(choose_security(&[1, 2], false).unwrap(), 1);
        assert_eq!(choose_security(&[1, 2], true).unwrap(), 2);
        assert_eq!(choose_security(&[1], true).unwrap(), 1);
        let e = choose_security(&[2], false).unwrap_err();
        assert!(e.to_string().contains("wants a password"), "{e}");
        assert!(choose_security(&[16, 19], true).is_err());
    }

    #[test]
    fn des_response_depends_on_the_first_eight_password_bytes() {
        // Interoperability is checked against QEMU's VNC server in tests/typing.rs.
        let challenge: [u8; 16] = std::array::from_fn(|i| i as u8);
        let r = vnc_auth_response("password", &challenge);
        let again = vnc_auth_response("password", &challenge);
        assert_eq!(r, again);
        assert_ne!(r, vnc_auth_response("passwore", &challenge));
        // Only the first 8 bytes of the password count.
        assert_eq!(r, vnc_auth_response("password-long", &challenge));
    }
}
