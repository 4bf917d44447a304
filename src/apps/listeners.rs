//! What an app's processes listen on, read from /proc: the socket inodes open in every process
//! of its process group, matched against the TCP listeners of /proc/net/tcp and tcp6. It tells
//! an operator why an app never became ready: it listens, but not where Porter looks.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The TCP addresses the processes of process group `pgid` listen on, sorted (empty when none
/// listens, or when /proc cannot be read).
pub(super) fn of_group(pgid: u32) -> Vec<SocketAddr> {
    let inodes: HashSet<u64> = members(pgid).flat_map(socket_inodes).collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<SocketAddr> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .into_iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(parse_listener)
                .filter(|(_, inode)| inodes.contains(inode))
                .map(|(addr, _)| addr)
                .collect::<Vec<_>>()
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The live processes whose process group is `pgid`.
fn members(pgid: u32) -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(move |pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // After "(name) ": state, ppid, pgrp.
            let Some(after) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
                return false;
            };
            after.split_whitespace().nth(2) == Some(&pgid.to_string())
        })
}

/// The inodes of the sockets process `pid` has open.
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// A LISTEN entry of /proc/net/tcp or tcp6: its local address and socket inode.
fn parse_listener(line: &str) -> Option<(SocketAddr, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    if fields.len() < 10 || fields[3] != "0A" {
        return None;
    }
    let (ip, port) = fields[1].split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // The address is printed as 32-bit words in the kernel's byte order.
    let mut bytes = Vec::with_capacity(16);
    for word in ip.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
        bytes.extend(word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some((SocketAddr::new(ip, port), fields[9].parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_its_own_listener_and_not_a_connection() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        let client = std::net::TcpStream::connect(v4.local_addr().unwrap()).unwrap();
        let pgid = nix::unistd::getpgrp().as_raw() as u32;
        let found = of_group(pgid);
        assert!(found.contains(&v4.local_addr().unwrap()), "{found:?}");
        if let Some(v6) = v6 {
            assert!(found.contains(&v6.local_addr().unwrap()), "{found:?}");
        }
        assert!(
            !found.contains(&client.local_addr().unwrap()),
            "only listeners: {found:?}"
        );
    }

    #[test]
    fn reads_the_kernels_format() {
        let line = "   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0";
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_listener(line),
                Some(("127.0.0.1:8000".parse().unwrap(), 12345))
            );
            let v6 = "   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1";
            assert_eq!(parse_listener(v6), Some(("[::1]:80".parse().unwrap(), 777)));
        }
        let established = line.replace(" 0A ", " 01 ");
        assert_eq!(parse_listener(&established), None);
    }
}
