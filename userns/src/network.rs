//! The container's side of the userspace network: run by the container's first process inside
//! its new network namespace (where it is root of its user namespace), before pivot_root.
//!
//! [`loopback_up`] brings `lo` up; [`create_tap`] creates the tap device the stack (`burrow
//! __netstack`, in the host's namespace) reads and writes, with the slirp4netns addresses, and
//! returns its fd, to be passed to burrow over SCM_RIGHTS. Plain ioctls, no netlink.

use std::ffi::CString;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// How the tap is configured; `burrow __netstack` derives it from `netstack::SlirpConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapConfig {
    pub mtu: u32,
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub ipv6: Option<TapIpv6>,
    /// The network namespace dies with the container: make the device persistent, so that
    /// closing the stack's fd does not unregister it (~20 ms of RCU grace periods under the RTNL
    /// lock on every container exit); the kernel removes it with the namespace, in the
    /// background. Not for a namespace that outlives the stack (`__netstack --netns-pid`).
    pub persist: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapIpv6 {
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    pub gateway: Ipv6Addr,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    #[error(
        "cannot open /dev/net/tun: {}: rootless networking needs /dev/net/tun readable and writable \
         by all users, as Debian, Fedora and Ubuntu ship it; as root run `chmod 0666 /dev/net/tun`, \
         or use --network none or --network host",
        .0.desc()
    )]
    TunAccess(Errno),
    #[error(
        "cannot open /dev/net/tun: it does not exist: load the tun module (`modprobe tun`) and create \
         it (`mkdir -p /dev/net && mknod -m 0666 /dev/net/tun c 10 200`), or use --network none or \
         --network host"
    )]
    TunMissing,
    #[error("invalid network interface name {0:?}")]
    BadName(String),
    #[error("{step} {name}: {}", .errno.desc())]
    Ioctl {
        step: &'static str,
        name: String,
        errno: Errno,
    },
}

/// `struct rtentry` (linux/route.h), which the libc crate does not export for glibc.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// `struct in6_rtmsg` (linux/ipv6_route.h); libc's has private fields.
#[repr(C)]
struct In6RtMsg {
    rtmsg_dst: libc::in6_addr,
    rtmsg_src: libc::in6_addr,
    rtmsg_gateway: libc::in6_addr,
    rtmsg_type: u32,
    rtmsg_dst_len: u16,
    rtmsg_src_len: u16,
    rtmsg_metric: u32,
    rtmsg_info: libc::c_ulong,
    rtmsg_flags: u32,
    rtmsg_ifindex: libc::c_int,
}

pub(crate) fn ifreq(name: &str) -> Result<libc::ifreq, NetworkError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) || bytes.contains(&b'/') {
        return Err(NetworkError::BadName(name.to_string()));
    }
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

pub(crate) fn sockaddr_v4(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes); sockaddr is plain old data.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn in6(addr: Ipv6Addr) -> libc::in6_addr {
    libc::in6_addr {
        s6_addr: addr.octets(),
    }
}

pub(crate) fn dgram_socket(family: libc::c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: socket() with constant arguments; the result is checked before it is owned.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: fd was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// ioctl with a pointer argument; `step` names it in the error.
pub(crate) fn ioctl<T>(
    fd: RawFd,
    request: libc::c_ulong,
    arg: &mut T,
    step: &'static str,
    name: &str,
) -> Result<(), NetworkError> {
    // SAFETY: arg points to a live, properly sized structure of the type `request` expects (each
    // caller passes the structure the kernel documents for that request).
    let r = unsafe { libc::ioctl(fd, request as _, arg as *mut T) };
    if r < 0 {
        return Err(NetworkError::Ioctl {
            step,
            name: name.to_string(),
            errno: Errno::last(),
        });
    }
    Ok(())
}

pub(crate) fn set_up(sock: RawFd, name: &str) -> Result<(), NetworkError> {
    let mut req = ifreq(name)?;
    ioctl(sock, libc::SIOCGIFFLAGS, &mut req, "reading the flags of", name)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    ioctl(sock, libc::SIOCSIFFLAGS, &mut req, "bringing up", name)
}

/// Brings the loopback interface of the current network namespace up.
pub fn loopback_up() -> Result<(), NetworkError> {
    let sock = dgram_socket(libc::AF_INET).map_err(|errno| NetworkError::Ioctl {
        step: "opening a socket to configure",
        name: "lo".into(),
        errno,
    })?;
    set_up(sock.as_raw_fd(), "lo")
}

/// Creates the tap device `name` in the current network namespace, configured from `config`
/// (MAC, MTU, IPv4 address and default route, optionally IPv6), up, and returns its fd. The tap
/// has `IFF_VNET_HDR` with checksum offload (`TUN_F_CSUM`); the stack detects it on the fd.
pub fn create_tap(name: &str, config: &TapConfig) -> Result<OwnedFd, NetworkError> {
    let path = CString::new("/dev/net/tun").expect("no NUL");
    // SAFETY: path is a valid NUL-terminated string; the result is checked before it is owned.
    let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(match Errno::last() {
            Errno::ENOENT | Errno::ENODEV | Errno::ENXIO => NetworkError::TunMissing,
            e => NetworkError::TunAccess(e),
        });
    }
    // SAFETY: raw was just returned by open() and is owned by nobody else.
    let tap = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = ifreq(name)?;
    // A virtio-net header on every frame carries checksum offload: the stack and the container's
    // kernel skip two passes over every TCP segment (see netstack's device.rs).
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    ioctl(
        tap.as_raw_fd(),
        libc::TUNSETIFF as libc::c_ulong,
        &mut req,
        "creating the tap device",
        name,
    )?;
    // SAFETY: TUNSETOFFLOAD takes its flags by value.
    if unsafe {
        libc::ioctl(
            tap.as_raw_fd(),
            libc::TUNSETOFFLOAD as _,
            libc::TUN_F_CSUM as libc::c_ulong,
        )
    } < 0
    {
        return Err(NetworkError::Ioctl {
            step: "enabling checksum offload on",
            name: name.to_string(),
            errno: Errno::last(),
        });
    }
    // SAFETY: TUNSETPERSIST takes its flag by value.
    if config.persist
        && unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETPERSIST as _, 1 as libc::c_ulong) } < 0
    {
        return Err(NetworkError::Ioctl {
            step: "making persistent",
            name: name.to_string(),
            errno: Errno::last(),
        });
    }

    let sock = dgram_socket(libc::AF_INET).map_err(|errno| NetworkError::Ioctl {
        step: "opening a socket to configure",
        name: name.into(),
        errno,
    })?;
    let s = sock.as_raw_fd();

    let mut req = ifreq(name)?;
    // SAFETY: writing plain data into the union member SIOCSIFHWADDR reads.
    unsafe {
        req.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
        for (d, b) in req.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(config.mac) {
            *d = b as libc::c_char;
        }
    }
    ioctl(
        s,
        libc::SIOCSIFHWADDR,
        &mut req,
        "setting the MAC address of",
        name,
    )?;

    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = config.mtu as libc::c_int;
    ioctl(s, libc::SIOCSIFMTU, &mut req, "setting the MTU of", name)?;

    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_addr = sockaddr_v4(config.address);
    ioctl(s, libc::SIOCSIFADDR, &mut req, "setting the address of", name)?;

    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_netmask = sockaddr_v4(config.netmask);
    ioctl(s, libc::SIOCSIFNETMASK, &mut req, "setting the netmask of", name)?;

    if config.ipv6.is_some() {
        // The stack never answers duplicate address detection for the container's address;
        // skipping it makes the address usable at once. Best effort.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/accept_dad"), "0");
    }

    set_up(s, name)?;

    let mut dev = CString::new(name)
        .expect("checked by ifreq")
        .into_bytes_with_nul();
    let mut route = RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr_v4(Ipv4Addr::UNSPECIFIED),
        rt_gateway: sockaddr_v4(config.gateway),
        rt_genmask: sockaddr_v4(Ipv4Addr::UNSPECIFIED),
        rt_flags: libc::RTF_UP | libc::RTF_GATEWAY,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_pad4: std::ptr::null_mut(),
        rt_metric: 0,
        rt_dev: dev.as_mut_ptr().cast(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    ioctl(
        s,
        libc::SIOCADDRT,
        &mut route,
        "adding the default route via",
        name,
    )?;

    if let Some(v6) = &config.ipv6 {
        configure_ipv6(name, v6)?;
    }
    Ok(tap)
}

fn configure_ipv6(name: &str, v6: &TapIpv6) -> Result<(), NetworkError> {
    let sock = dgram_socket(libc::AF_INET6).map_err(|errno| NetworkError::Ioctl {
        step: "opening an IPv6 socket to configure",
        name: name.into(),
        errno,
    })?;
    let s = sock.as_raw_fd();
    let mut req = ifreq(name)?;
    ioctl(s, libc::SIOCGIFINDEX, &mut req, "finding the index of", name)?;
    // SAFETY: SIOCGIFINDEX filled the ifindex member of the union.
    let index = unsafe { req.ifr_ifru.ifru_ifindex };
    let mut addr = libc::in6_ifreq {
        ifr6_addr: in6(v6.address),
        ifr6_prefixlen: u32::from(v6.prefix_len),
        ifr6_ifindex: index,
    };
    ioctl(
        s,
        libc::SIOCSIFADDR,
        &mut addr,
        "setting the IPv6 address of",
        name,
    )?;
    let mut route = In6RtMsg {
        rtmsg_dst: in6(Ipv6Addr::UNSPECIFIED),
        rtmsg_src: in6(Ipv6Addr::UNSPECIFIED),
        rtmsg_gateway: in6(v6.gateway),
        rtmsg_type: 0,
        rtmsg_dst_len: 0,
        rtmsg_src_len: 0,
        rtmsg_metric: 1,
        rtmsg_info: 0,
        rtmsg_flags: u32::from(libc::RTF_UP | libc::RTF_GATEWAY),
        rtmsg_ifindex: index,
    };
    ioctl(
        s,
        libc::SIOCADDRT,
        &mut route,
        "adding the IPv6 default route via",
        name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_struct_sizes() {
        // linux/route.h and linux/ipv6_route.h on 64-bit targets.
        #[cfg(target_pointer_width = "64")]
        {
            assert_eq!(std::mem::size_of::<RtEntry>(), 120);
            assert_eq!(std::mem::size_of::<In6RtMsg>(), 80);
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert!(matches!(ifreq(""), Err(NetworkError::BadName(_))));
        assert!(matches!(
            ifreq("a-name-that-is-too-long"),
            Err(NetworkError::BadName(_))
        ));
        assert!(ifreq("tap0").is_ok());
    }

    #[test]
    fn tun_error_names_the_device_and_the_fix() {
        let msg = NetworkError::TunAccess(Errno::EACCES).to_string();
        assert!(msg.contains("/dev/net/tun"), "{msg}");
        assert!(msg.contains("chmod 0666 /dev/net/tun"), "{msg}");
        assert!(NetworkError::TunMissing.to_string().contains("modprobe tun"));
    }

    /// As root (hack/test.sh runs unit tests as root): a thread of its own in a new network
    /// namespace gets a configured tap. Skipped for other users.
    #[test]
    fn creates_a_configured_tap_in_a_new_netns() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let result = std::thread::spawn(|| {
            // Only this thread moves; it ends with the test.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
            loopback_up().map_err(|e| e.to_string())?;
            let config = TapConfig {
                mtu: 65520,
                mac: [0x52, 0x56, 10, 0, 2, 100],
                address: Ipv4Addr::new(10, 0, 2, 100),
                netmask: Ipv4Addr::new(255, 255, 255, 0),
                gateway: Ipv4Addr::new(10, 0, 2, 2),
                ipv6: Some(TapIpv6 {
                    address: "fd00::100".parse().unwrap(),
                    prefix_len: 64,
                    gateway: "fd00::2".parse().unwrap(),
                }),
                persist: false,
            };
            let _tap = create_tap("tap0", &config).map_err(|e| e.to_string())?;
            let route = std::fs::read_to_string("/proc/thread-self/net/route").map_err(|e| e.to_string())?;
            let mtu = std::fs::read_to_string("/sys/class/net/tap0/mtu").unwrap_or_default();
            let v6 = std::fs::read_to_string("/proc/thread-self/net/if_inet6").map_err(|e| e.to_string())?;
            Ok::<_, String>((route, mtu, v6))
        })
        .join()
        .unwrap();
        let (route, _mtu, v6) = result.unwrap();
        // Default route (destination 0) via 10.0.2.2 (little-endian hex 0202000A) on tap0.
        assert!(
            route.lines().any(|l| l.starts_with("tap0\t00000000\t0202000A")),
            "{route}"
        );
        assert!(v6.contains("fd000000000000000000000000000100"), "{v6}");
    }
}
