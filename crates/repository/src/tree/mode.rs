//! restic keeps a node's mode as Go's `io/fs.FileMode` (permission bits and Go's own type and
//! special bits), not as POSIX `st_mode`; restic, rustic and Coffer must agree on it.

const PERM: u32 = 0o777;
const DIR: u32 = 1 << 31;
const SYMLINK: u32 = 1 << 27;
const DEVICE: u32 = 1 << 26;
const FIFO: u32 = 1 << 25;
const SOCKET: u32 = 1 << 24;
const SETUID: u32 = 1 << 23;
const SETGID: u32 = 1 << 22;
const CHARDEV: u32 = 1 << 21;
const STICKY: u32 = 1 << 20;
const IRREGULAR: u32 = 1 << 19;

/// A POSIX `st_mode` as restic stores it.
pub fn to_go(mode: u32) -> u32 {
    let mut go = mode & PERM;
    go |= match mode & 0o170000 {
        0o140000 => SOCKET,
        0o120000 => SYMLINK,
        0o060000 => DEVICE,
        0o040000 => DIR,
        0o020000 => DEVICE | CHARDEV,
        0o010000 => FIFO,
        0o100000 => 0,
        _ => IRREGULAR,
    };
    for (posix, g) in [(0o4000, SETUID), (0o2000, SETGID), (0o1000, STICKY)] {
        if mode & posix != 0 {
            go |= g;
        }
    }
    go
}

/// The permission and special bits (`0o7777`) of a mode restic stored.
pub fn permissions(go: u32) -> u32 {
    let mut mode = go & PERM;
    for (posix, g) in [(0o4000, SETUID), (0o2000, SETGID), (0o1000, STICKY)] {
        if go & g != 0 {
            mode |= posix;
        }
    }
    mode
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_keep_their_bits() {
        assert_eq!(to_go(0o100644), 0o644);
        assert_eq!(to_go(0o040755), DIR | 0o755);
        assert_eq!(to_go(0o104755), SETUID | 0o755);
        assert_eq!(to_go(0o020620), DEVICE | CHARDEV | 0o620);
        for m in [0o4755, 0o2750, 0o1777, 0o600] {
            assert_eq!(permissions(to_go(0o100000 | m)), m);
        }
    }
}
