//! `[mesh]`: the cluster this node belongs to, and the checks that keep a
//! half-configured cluster from starting.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::ConfigError;

/// `[mesh]`: the cluster this node belongs to. No mesh unless `listen` is set.
#[derive(Clone, PartialEq)]
pub struct MeshSection {
    /// Where other nodes connect (mesh traffic only, not HTTP).
    pub listen: Option<SocketAddr>,
    /// The address other nodes dial; defaults to `listen` (required when that is 0.0.0.0).
    pub advertise: Option<SocketAddr>,
    /// Nodes to join through, `ip:port` or `name:port`; any one live seed is enough.
    pub seeds: Vec<String>,
    /// Shared by every node, at least [`crate::mesh::MIN_SECRET_LEN`] bytes.
    pub secret: Option<String>,
    /// Mutual TLS between nodes: this node's certificate chain and key, and the
    /// CA every node's certificate must chain to. All three, or none.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    /// The name every node's certificate carries and peers verify (nodes dial
    /// each other by address, so one shared name instead of per-node ones).
    pub tls_name: String,
}

/// The name mesh certificates carry unless `mesh.tls_name` says otherwise.
pub const DEFAULT_MESH_TLS_NAME: &str = "chatpulse-mesh";

impl Default for MeshSection {
    fn default() -> Self {
        MeshSection {
            listen: None,
            advertise: None,
            seeds: Vec::new(),
            secret: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            tls_name: DEFAULT_MESH_TLS_NAME.into(),
        }
    }
}

/// The secret stays out of logs and panic messages.
impl fmt::Debug for MeshSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshSection")
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("seeds", &self.seeds)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_ca", &self.tls_ca)
            .field("tls_name", &self.tls_name)
            .finish()
    }
}

/// A mesh cannot run without its shared secret.
pub(super) fn check(m: &MeshSection) -> Result<(), ConfigError> {
    if let (Some(_), None) = (m.listen, &m.secret) {
        return Err(ConfigError::Missing {
            key: "mesh.secret (mesh.listen is set)".into(),
        });
    }
    let set = [&m.tls_cert, &m.tls_key, &m.tls_ca].map(Option::is_some);
    if set.contains(&true) && set.contains(&false) {
        let missing: Vec<&str> = ["mesh.tls_cert", "mesh.tls_key", "mesh.tls_ca"]
            .into_iter()
            .zip(set)
            .filter(|(_, is_set)| !is_set)
            .map(|(key, _)| key)
            .collect();
        return Err(ConfigError::Missing {
            key: format!("{} (mesh TLS needs all three files)", missing.join(" and ")),
        });
    }
    Ok(())
}
