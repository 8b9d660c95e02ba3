//! Shared-token authentication for every gRPC service of the run.
//!
//! Each role reads the same secret from `--token-file`. Servers check the
//! `authorization: Bearer <token>` metadata of every request ([`RequireToken`], a tonic
//! interceptor installed as a server layer, so health and reflection are covered too);
//! clients attach it ([`AttachToken`]). A server that listens beyond loopback must have a
//! token ([`check_listen`]); on loopback the token is optional (single-machine runs, tests).

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::error::{Error, Result};

const MIN_TOKEN_LEN: usize = 16;
const MAX_TOKEN_LEN: usize = 4096;

/// The shared secret. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// Reads the token from the first line of `path` (surrounding whitespace ignored).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::TokenFile {
            path: path.to_path_buf(),
            source,
        })?;
        warn_if_shared(path);
        Self::parse(text.trim()).map_err(|reason| Error::TokenInvalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// A token from its text: 16 to 4096 printable ASCII characters, no spaces.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        if text.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "it has {} characters, fewer than {MIN_TOKEN_LEN}",
                text.len()
            ));
        }
        if text.len() > MAX_TOKEN_LEN {
            return Err(format!(
                "it has {} characters, more than {MAX_TOKEN_LEN}",
                text.len()
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("it contains spaces, control or non-ASCII characters".into());
        }
        Ok(Self(text.into()))
    }

    fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), presented)
    }
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "token file is readable by other users; chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}

/// Compares in a time that depends only on the expected token's length: no early exit on
/// the first differing byte, nor on a presented token of another length.
fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    let mut diff = u8::from(expected.len() != presented.len());
    for (i, x) in expected.iter().enumerate() {
        diff |= x ^ presented.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// Refuses a non-loopback listen address without a token.
pub fn check_listen(addr: SocketAddr, token: Option<&Token>) -> Result<()> {
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(Error::TokenRequired { addr });
    }
    Ok(())
}

/// Server side: every request must carry `authorization: Bearer <token>` (no check when
/// the server runs without a token, which [`check_listen`] only allows on loopback).
#[derive(Debug, Clone)]
pub struct RequireToken {
    token: Option<Token>,
}

impl RequireToken {
    pub fn new(token: Option<Token>) -> Self {
        Self { token }
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else {
            return Ok(request);
        };
        let Some(value) = request.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "missing authorization metadata: send `authorization: Bearer <token>` with the run's token",
            ));
        };
        let presented = value.as_bytes().strip_prefix(b"Bearer ").ok_or_else(|| {
            Status::unauthenticated("authorization metadata must be `Bearer <token>`")
        })?;
        if token.matches(presented) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "invalid token: use the run's --token-file",
            ))
        }
    }
}

/// Client side: attaches `authorization: Bearer <token>` to every request.
#[derive(Debug, Clone, Default)]
pub struct AttachToken {
    header: Option<AsciiMetadataValue>,
}

impl AttachToken {
    pub fn new(token: Option<&Token>) -> Self {
        // A parsed token is printable ASCII, so the header value is always valid.
        let header = token.and_then(|t| MetadataValue::try_from(format!("Bearer {}", t.0)).ok());
        Self { header }
    }
}

impl Interceptor for AttachToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        Token::parse("0123456789abcdef0123").unwrap()
    }

    fn request(auth: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(a) = auth {
            r.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        r
    }

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"abcd", b"abcd"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"abcd", b"abcd\0"));
        assert!(!constant_time_eq(b"abc\0", b"abc"));
        assert!(!constant_time_eq(b"abcd", b"abce"));
        assert!(!constant_time_eq(b"abcd", b""));
    }

    #[test]
    fn missing_wrong_and_malformed_tokens_are_unauthenticated() {
        let mut check = RequireToken::new(Some(token()));
        for auth in [
            None,
            Some("Bearer nope-nope-nope-nope"),
            Some("0123456789abcdef0123"),
            Some("Bearer 0123456789abcdef012"),
            Some("Basic 0123456789abcdef0123"),
        ] {
            let err = check.call(request(auth)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{auth:?}");
        }
        assert!(
            check
                .call(request(Some("Bearer 0123456789abcdef0123")))
                .is_ok()
        );
        // The client interceptor produces exactly what the server accepts.
        let attached = AttachToken::new(Some(&token()))
            .call(request(None))
            .unwrap();
        assert!(check.call(attached).is_ok());
        // Without a token, the server accepts everything.
        assert!(RequireToken::new(None).call(request(None)).is_ok());
    }

    #[test]
    fn tokens_are_validated_and_never_printed() {
        assert!(Token::parse("short").is_err());
        assert!(Token::parse("has a space in the middle!").is_err());
        assert!(Token::parse(&"x".repeat(5000)).is_err());
        assert_eq!(format!("{:?}", token()), "Token(<redacted>)");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  0123456789abcdef0123\n").unwrap();
        assert_eq!(Token::from_file(&path).unwrap(), token());
        std::fs::write(&path, "\n").unwrap();
        let err = Token::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("fewer than 16"), "{err}");
        assert!(Token::from_file(&dir.path().join("absent")).is_err());
    }

    #[test]
    fn listening_beyond_loopback_needs_a_token() {
        let lo: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let lo6: SocketAddr = "[::1]:1".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:1".parse().unwrap();
        assert!(check_listen(lo, None).is_ok());
        assert!(check_listen(lo6, None).is_ok());
        let err = check_listen(any, None).unwrap_err();
        assert!(err.to_string().contains("0.0.0.0:1"), "{err}");
        assert!(check_listen(any, Some(&token())).is_ok());
    }
}
