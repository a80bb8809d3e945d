//! TLS on smol: rustls (ring provider) through futures-rustls. Client configs
//! trust the embedded Mozilla roots (no dependency on the host's /etc/ssl) plus
//! an optional extra CA file; server configs load a PEM chain and key.
//! [`MaybeTls`] (client) and [`Conn`] (server) let one code path speak plain
//! TCP or TLS. [`TlsSlot`] holds the built-in HTTPS certificate (`[tls]`) and
//! swaps it on reload; each accept reads the current one, so open connections
//! keep the certificate they started with.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use smol::future::FutureExt;
use smol::io::{AsyncRead, AsyncWrite};
use smol::net::TcpStream;

#[derive(Debug)]
pub enum TlsError {
    Io(String, io::Error),
    Pem(String, String),
    Rustls(rustls::Error),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Io(what, e) => write!(f, "{what}: {e}"),
            TlsError::Pem(what, e) => write!(f, "{what}: {e}"),
            TlsError::Rustls(e) => write!(f, "tls: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let what = || path.display().to_string();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Pem(what(), e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(what(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Pem(what(), "no certificate found".into()));
    }
    Ok(certs)
}

/// A client config trusting the embedded roots and, if given, the CAs in `extra_ca`.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        for cert in read_certs(path)? {
            roots
                .add(cert)
                .map_err(|e| TlsError::Pem(path.display().to_string(), e.to_string()))?;
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A server config from a PEM certificate chain and a PEM private key.
pub fn server_config(cert_pem: &Path, key_pem: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    load_server_config(cert_pem, key_pem)
        .map_err(|e| TlsError::Pem(e.path.display().to_string(), e.message))
}

/// Which `[tls]` file could not be used, and why.
#[derive(Debug, Clone)]
pub struct TlsFileError {
    /// `tls.cert` or `tls.key`.
    pub key: &'static str,
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for TlsFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} = {:?}: {}",
            self.key,
            self.path.display().to_string(),
            self.message
        )
    }
}

impl std::error::Error for TlsFileError {}

/// Like [`server_config`], naming the `[tls]` key of the file at fault. TLS 1.2
/// and 1.3 only (rustls' safe defaults).
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsFileError> {
    let err = |which, path: &Path, message: String| TlsFileError {
        key: which,
        path: path.to_path_buf(),
        message,
    };
    let certs = read_certs(cert).map_err(|e| match e {
        TlsError::Pem(_, m) => err("tls.cert", cert, m),
        other => err("tls.cert", cert, other.to_string()),
    })?;
    let private = read_private_key("tls.key", key)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("tls.cert", cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| err("tls.key", key, format!("does not match tls.cert: {e}")))?;
    Ok(Arc::new(config))
}

/// A PEM private key that only its owner (and group) may read: a key every
/// user on the host can read is refused, at start and on reload.
fn read_private_key(
    which: &'static str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    use crate::config::perms::{chmod_hint, world_access};
    let err = |message: String| TlsFileError {
        key: which,
        path: path.to_path_buf(),
        message,
    };
    if let Some(mode) = world_access(path) {
        return Err(err(format!(
            "a private key must stay private: {}",
            chmod_hint(path, mode)
        )));
    }
    PrivateKeyDer::from_pem_file(path).map_err(|e| err(e.to_string()))
}

/// Mutual TLS between mesh nodes, TLS 1.3 only: each side presents its chain
/// from `cert`/`key` and accepts only a peer whose certificate chains to `ca`
/// (the embedded public roots play no part) and, for the dialed side, carries
/// `name`. Returns the acceptor's and the dialer's config.
pub fn mesh_configs(
    cert: &Path,
    key: &Path,
    ca: &Path,
) -> Result<(Arc<ServerConfig>, Arc<ClientConfig>), TlsFileError> {
    let err = |which, path: &Path, message: String| TlsFileError {
        key: which,
        path: path.to_path_buf(),
        message,
    };
    let pem = |which, path: &Path, e: TlsError| match e {
        TlsError::Pem(_, m) => err(which, path, m),
        other => err(which, path, other.to_string()),
    };
    let certs = read_certs(cert).map_err(|e| pem("mesh.tls_cert", cert, e))?;
    let private = read_private_key("mesh.tls_key", key)?;
    let mut roots = RootCertStore::empty();
    for c in read_certs(ca).map_err(|e| pem("mesh.tls_ca", ca, e))? {
        roots
            .add(c)
            .map_err(|e| err("mesh.tls_ca", ca, e.to_string()))?;
    }
    let roots = Arc::new(roots);
    let mismatch = |e: rustls::Error| {
        let message = format!("does not match mesh.tls_cert: {e}");
        err("mesh.tls_key", key, message)
    };
    let tls13 = [&rustls::version::TLS13];
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
            .build()
            .map_err(|e| err("mesh.tls_ca", ca, e.to_string()))?;
    let server = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&tls13)
        .map_err(|e| err("mesh.tls_cert", cert, e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), private.clone_key())
        .map_err(mismatch)?;
    let client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&tls13)
        .map_err(|e| err("mesh.tls_cert", cert, e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, private)
        .map_err(mismatch)?;
    Ok((Arc::new(server), Arc::new(client)))
}

/// The built-in HTTPS certificate: the files it came from and the config
/// built from them, swapped whole on [`TlsSlot::reload`].
pub struct TlsSlot {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<Arc<ServerConfig>>,
}

impl TlsSlot {
    /// Loads both files; an error names the key and path at fault.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsSlot, TlsFileError> {
        Ok(TlsSlot {
            current: Mutex::new(load_server_config(cert, key)?),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        })
    }

    /// Re-reads both files; on an error the old certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsFileError> {
        let fresh = load_server_config(&self.cert, &self.key)?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The server side of a handshake on an accepted socket, bounded by
    /// `timeout` so a client that never finishes cannot hold the connection.
    pub async fn accept(&self, tcp: TcpStream, timeout: Duration) -> io::Result<Conn> {
        let acceptor = futures_rustls::TlsAcceptor::from(self.current());
        let handshake = async { acceptor.accept(tcp).await.map(|s| Conn::Tls(Box::new(s))) };
        handshake
            .or(async {
                smol::Timer::after(timeout).await;
                Err(io::ErrorKind::TimedOut.into())
            })
            .await
    }
}

/// Opens a TCP connection to `host:port`, with TLS (SNI = `host`) when `config` is given.
pub async fn connect(
    host: &str,
    port: u16,
    config: Option<&Arc<ClientConfig>>,
) -> io::Result<MaybeTls> {
    let tcp = TcpStream::connect((host.trim_matches(|c| c == '[' || c == ']'), port)).await?;
    let _ = tcp.set_nodelay(true);
    let Some(config) = config else {
        return Ok(MaybeTls::Plain(tcp));
    };
    let name = ServerName::try_from(host.trim_matches(|c| c == '[' || c == ']').to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let tls = futures_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await?;
    Ok(MaybeTls::Tls(Box::new(tls)))
}

/// Plain TCP or TLS over TCP; `T` is the client or the server TLS stream. The
/// TLS side is boxed: an idle plain socket stays one pointer wide.
pub enum Stream<T> {
    Plain(TcpStream),
    Tls(Box<T>),
}

/// A client stream that is plain TCP or TLS over TCP.
pub type MaybeTls = Stream<futures_rustls::client::TlsStream<TcpStream>>;
/// An accepted connection: plain TCP or TLS over TCP.
pub type Conn = Stream<futures_rustls::server::TlsStream<TcpStream>>;

impl<T> Stream<T> {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl Stream<futures_rustls::TlsStream<TcpStream>> {
    /// The TCP socket under it (socket options; the TLS state stays put).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}
