//! Secrets at rest: a config file that holds secrets must not be readable (or
//! writable) by every user on the host; the node refuses to start on one and
//! says which `chmod` fixes it. The same test guards the private keys the config
//! names (checked where `tls` reads them) and the store files (`store`).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nanoserde::Toml;

use super::ConfigError;

/// Config keys whose values are secrets (`postgres.url` may carry a password).
pub const SECRET_KEYS: &[&str] = &[
    "twitch.client_secret",
    "twitch.user_token",
    "twitch.webhook_secret",
    "auth.session_secret",
    "auth.encryption_key",
    "mesh.secret",
    "postgres.url",
];

/// "Other" permission bits: read or write for every user.
const WORLD: u32 = 0o006;

/// `Some(mode)` when `path` is open to every user; `None` when private or absent
/// (a missing file is reported by whoever opens it).
pub fn world_access(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & WORLD != 0).then_some(mode)
}

/// The advice every refusal ends with.
pub fn chmod_hint(path: &Path, mode: u32) -> String {
    format!(
        "it is {} by every user (mode {mode:04o}); run: chmod o-rwx {}",
        match mode & WORLD {
            0o004 => "readable",
            0o002 => "writable",
            _ => "readable and writable",
        },
        path.display()
    )
}

/// The config file itself: refused when it sets a secret and is open to all.
pub fn check_config_file(path: &Path, map: &BTreeMap<String, Toml>) -> Result<(), ConfigError> {
    let secrets: Vec<&str> = SECRET_KEYS
        .iter()
        .copied()
        .filter(|k| map.contains_key(*k))
        .collect();
    match world_access(path) {
        Some(mode) if !secrets.is_empty() => Err(ConfigError::Exposed {
            path: path.to_path_buf(),
            holds: secrets.join(", "),
            hint: chmod_hint(path, mode),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn load(path: &Path) -> Result<super::super::Config, ConfigError> {
        let overrides = super::super::Overrides {
            config_path: Some(path.to_path_buf()),
            ..Default::default()
        };
        super::super::load(&overrides, &[])
    }

    #[test]
    fn world_readable_secrets_are_refused_with_the_fix() {
        let dir = crate::store::TempDir::new("perms");
        let secret = "[mesh]\nsecret = \"0123456789abcdef\"\n";
        let open = file(&dir.0, "open.toml", secret, 0o644);
        let err = load(&open).unwrap_err().to_string();
        assert!(err.contains("mesh.secret"), "{err}");
        assert!(err.contains("mode 0644"), "{err}");
        assert!(
            err.contains(&format!("chmod o-rwx {}", open.display())),
            "{err}"
        );
        assert!(
            !err.contains("0123456789abcdef"),
            "the secret is never echoed: {err}"
        );
        // Group-readable is how the systemd unit ships it (0640 root:chatpulse).
        assert!(load(&file(&dir.0, "group.toml", secret, 0o640)).is_ok());
        // Writable by all is refused too; a file without secrets may be open.
        let err = load(&file(&dir.0, "w.toml", secret, 0o602)).unwrap_err();
        assert!(err.to_string().contains("writable by every user"), "{err}");
        assert!(load(&file(&dir.0, "plain.toml", "[votes]\n", 0o644)).is_ok());
    }
}
