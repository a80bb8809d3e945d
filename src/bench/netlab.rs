//! A throwaway network for multi-node benchmarks and tests (Linux, root, `ip`
//! from iproute2): each host gets its own network namespace with two veth
//! ports, one on a *client* bridge (the tool, in the root namespace, reaches
//! every host's HTTP there) and one on a *mesh* bridge (node ↔ node traffic).
//! [`Lab::partition`] moves mesh ports onto separate bridges, so packets between
//! the groups are silently lost, as when a cable is cut, while every host stays
//! reachable from the tool; [`Lab::heal`] moves them back. Everything is
//! removed on drop (deleting a namespace deletes its veths).
//!
//! Addresses: client side `10.X.Y.1` (the tool) and `10.X.Y.(11+i)`; mesh side
//! `10.X.(Y+1).(11+i)`, with X.Y derived from the process id so concurrent labs
//! do not collide.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// At most this many hosts (and partition groups) per lab.
pub const MAX_HOSTS: usize = 8;

static LABS: AtomicU32 = AtomicU32::new(0);

pub struct Lab {
    tag: String,
    hosts: usize,
    net: [u8; 2],
    /// Mesh bridges: [0] is the healed network, [k] group k of a partition.
    mesh_bridges: Vec<String>,
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running ip: {e} (iproute2 is needed)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether this process can build labs (root with a working `ip netns`).
pub fn available() -> bool {
    let euid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        });
    euid.as_deref() == Some("0") && ip(&["netns", "list"]).is_ok()
}

impl Lab {
    /// Creates `hosts` namespaces wired to a client and a mesh bridge.
    pub fn create(hosts: usize) -> Result<Lab, String> {
        if hosts == 0 || hosts > MAX_HOSTS {
            return Err(format!("a lab has 1..={MAX_HOSTS} hosts"));
        }
        let pid = std::process::id();
        let seq = LABS.fetch_add(1, Ordering::SeqCst);
        // Short: interface names have at most 15 bytes.
        let tag = format!("{:x}", (pid << 4 | (seq & 0xf)) & 0xff_ffff);
        let n = (pid.wrapping_mul(16) + seq) % 5000;
        let net = [200 + (n / 100) as u8 % 50, (n % 100 * 2) as u8];
        let mut lab = Lab {
            tag,
            hosts,
            net,
            mesh_bridges: Vec::new(),
        };
        // On failure `lab` is dropped here, which removes what was built.
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), String> {
        let client_br = format!("cpc{}", self.tag);
        ip(&["link", "add", &client_br, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.tool_ip()),
            "dev",
            &client_br,
        ])?;
        ip(&["link", "set", &client_br, "up"])?;
        self.bridge(0)?;
        for i in 0..self.hosts {
            let ns = self.netns(i);
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            for (side, br, ip4) in [
                ("c", client_br.clone(), self.client_ip(i)),
                ("m", self.mesh_bridges[0].clone(), self.mesh_ip(i)),
            ] {
                let outer = format!("cp{side}{}h{i}", self.tag);
                let inner = if side == "c" { "eth0" } else { "eth1" };
                ip(&[
                    "link", "add", &outer, "type", "veth", "peer", "name", inner, "netns", &ns,
                ])?;
                ip(&["link", "set", &outer, "master", &br, "up"])?;
                ip(&["-n", &ns, "addr", "add", &format!("{ip4}/24"), "dev", inner])?;
                ip(&["-n", &ns, "link", "set", inner, "up"])?;
            }
        }
        Ok(())
    }

    /// Mesh bridge `k` (created on first use).
    fn bridge(&mut self, k: usize) -> Result<String, String> {
        if let Some(br) = self.mesh_bridges.get(k) {
            return Ok(br.clone());
        }
        let br = format!("cpm{}b{k}", self.tag);
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&["link", "set", &br, "up"])?;
        self.mesh_bridges.push(br.clone());
        Ok(br)
    }

    pub fn hosts(&self) -> usize {
        self.hosts
    }

    pub fn netns(&self, i: usize) -> String {
        format!("chatpulse-{}-{i}", self.tag)
    }

    /// The tool's own address on the client bridge (where it serves feeds).
    pub fn tool_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net[0], self.net[1], 1)
    }

    /// Host `i` on the client bridge (its HTTP listener).
    pub fn client_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net[0], self.net[1], 11 + i as u8)
    }

    /// Host `i` on the mesh bridge (its `[mesh] listen`).
    pub fn mesh_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net[0], self.net[1] + 1, 11 + i as u8)
    }

    /// `program` run inside host `i`'s namespace.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns(i)]).arg(program);
        cmd
    }

    /// Splits the mesh: hosts in different `groups` can no longer reach each
    /// other (packets are dropped, nothing is refused); hosts in no group keep
    /// the healed bridge. Replaces any earlier partition.
    pub fn partition(&mut self, groups: &[&[usize]]) -> Result<(), String> {
        if groups.len() >= MAX_HOSTS {
            return Err("too many groups".into());
        }
        for (g, hosts) in groups.iter().enumerate() {
            let br = self.bridge(g + 1)?;
            for &i in hosts.iter().filter(|&&i| i < self.hosts) {
                self.attach_mesh_port(i, &br)?;
            }
        }
        Ok(())
    }

    /// Every mesh port back on one bridge.
    pub fn heal(&mut self) -> Result<(), String> {
        let healed = self.mesh_bridges[0].clone();
        for i in 0..self.hosts {
            self.attach_mesh_port(i, &healed)?;
        }
        Ok(())
    }

    /// Host `i`'s mesh port onto bridge `br`.
    fn attach_mesh_port(&self, i: usize, br: &str) -> Result<(), String> {
        ip(&["link", "set", &format!("cpm{}h{i}", self.tag), "master", br])
    }

    fn teardown(&self) -> Result<(), String> {
        let mut first_err = Ok(());
        for i in 0..self.hosts {
            let r = ip(&["netns", "delete", &self.netns(i)]);
            first_err = first_err.and(r.or_else(|e| {
                if e.contains("No such file") {
                    Ok(())
                } else {
                    Err(e)
                }
            }));
        }
        for br in self
            .mesh_bridges
            .iter()
            .cloned()
            .chain([format!("cpc{}", self.tag)])
        {
            let _ = ip(&["link", "delete", &br]);
        }
        first_err
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("netlab: cleanup: {e}");
        }
    }
}
