//! Import on real file systems: reflink on loop-mounted xfs and btrfs
//! images, hard link on one file system, move across file systems (a tmpfs
//! the test mounts), and a SIGKILL loop that kills importing child
//! processes at random moments.
//!
//! Mounting needs root, loop devices and mkfs.xfs/mkfs.btrfs (Debian:
//! xfsprogs, btrfs-progs; `scripts/test.sh` installs them). Where the
//! machine cannot, the test prints "skipping: <reason>" and passes.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use piece_store::{ImportMethod, import};

/// A file system mounted for one test; unmounted on drop.
struct Mount {
    dir: PathBuf,
    _keep: tempfile::TempDir,
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Busy (a child we killed may still hold a file): detach it.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Makes an image of file system `fs_type` and loop-mounts it.
fn mount_image(fs_type: &str) -> Result<Mount, String> {
    if !is_root() {
        return Err("not root, cannot mount a loop device".into());
    }
    let mkfs = find_program(&format!("mkfs.{fs_type}")).ok_or(format!(
        "mkfs.{fs_type} not installed (Debian: {})",
        if fs_type == "xfs" {
            "xfsprogs"
        } else {
            "btrfs-progs"
        }
    ))?;
    let keep = tempfile::tempdir().map_err(|e| e.to_string())?;
    let img = keep.path().join("fs.img");
    let dir = keep.path().join("mnt");
    fs::create_dir(&dir).map_err(|e| e.to_string())?;
    // Sparse: only what the file system writes takes disk space. 300 MiB
    // is xfs's minimum size, btrfs's is 114 MiB.
    fs::File::create(&img)
        .and_then(|f| f.set_len(300 << 20))
        .map_err(|e| e.to_string())?;
    run(Command::new(mkfs).arg("-q").arg(&img))?;
    run(Command::new("mount")
        .args(["-o", "loop"])
        .arg(&img)
        .arg(&dir))
    .map_err(|e| format!("cannot loop-mount (no loop devices here?): {e}"))?;
    Ok(Mount { dir, _keep: keep })
}

fn mount_tmpfs() -> Result<Mount, String> {
    if !is_root() {
        return Err("not root, cannot mount a tmpfs".into());
    }
    let keep = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = keep.path().join("mnt");
    fs::create_dir(&dir).map_err(|e| e.to_string())?;
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256m", "tmpfs"])
        .arg(&dir))?;
    Ok(Mount { dir, _keep: keep })
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i ^ seed).wrapping_mul(2654435761).to_le_bytes()[2])
        .collect()
}

fn skip(test: &str, why: &str) {
    eprintln!("skipping: {test}: {why}");
}

#[test]
fn reflink_on_loop_mounted_xfs_and_btrfs() {
    for fs_type in ["xfs", "btrfs"] {
        let m = match mount_image(fs_type) {
            Ok(m) => m,
            Err(why) => {
                skip(&format!("reflink on {fs_type}"), &why);
                continue;
            }
        };
        let data = pattern(8 << 20, 1);
        let src = m.dir.join("downloads/0123/film.mkv");
        let dst = m.dir.join("library/7/film.mkv");
        fs::create_dir_all(src.parent().unwrap()).unwrap();
        fs::write(&src, &data).unwrap();
        let t0 = Instant::now();
        assert_eq!(
            import(&src, &dst).unwrap(),
            ImportMethod::Reflink,
            "{fs_type}"
        );
        eprintln!("{fs_type}: reflink of 8 MiB took {:?}", t0.elapsed());
        assert_eq!(fs::read(&dst).unwrap(), data);
        // Still seedable from downloads/, and a distinct inode: writing one
        // must not change the other (copy-on-write, not a link).
        let (a, b) = (fs::metadata(&src).unwrap(), fs::metadata(&dst).unwrap());
        assert_ne!(a.ino(), b.ino());
        assert_eq!(a.mtime(), b.mtime(), "mtime kept for the scanner's cache");
        fs::write(&src, b"changed").unwrap();
        assert_eq!(
            fs::read(&dst).unwrap(),
            data,
            "{fs_type}: clone shares writes"
        );
    }
}

#[test]
fn hard_link_on_one_file_system() {
    // tmpfs has hard links but no FICLONE, so the second strategy is used.
    let m = match mount_tmpfs() {
        Ok(m) => m,
        Err(why) => return skip("hard link", &why),
    };
    let data = pattern(1 << 20, 2);
    let src = m.dir.join("downloads/abcd/film.mkv");
    let dst = m.dir.join("library/3/film.mkv");
    fs::create_dir_all(src.parent().unwrap()).unwrap();
    fs::write(&src, &data).unwrap();
    assert_eq!(import(&src, &dst).unwrap(), ImportMethod::HardLink);
    let (a, b) = (fs::metadata(&src).unwrap(), fs::metadata(&dst).unwrap());
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
    assert_eq!(a.nlink(), 2);
    // A repeated import is a no-op.
    assert_eq!(import(&src, &dst).unwrap(), ImportMethod::AlreadyPresent);
}

#[test]
fn move_across_file_systems() {
    let m = match mount_tmpfs() {
        Ok(m) => m,
        Err(why) => return skip("move across file systems", &why),
    };
    let disk = tempfile::tempdir().unwrap();
    let data = pattern(4 << 20, 3);
    let src = disk.path().join("downloads/abcd/film.mkv");
    let dst = m.dir.join("library/5/film.mkv");
    fs::create_dir_all(src.parent().unwrap()).unwrap();
    fs::write(&src, &data).unwrap();
    let mtime = fs::metadata(&src).unwrap().mtime();
    assert_ne!(
        fs::metadata(disk.path()).unwrap().dev(),
        fs::metadata(&m.dir).unwrap().dev()
    );
    assert_eq!(import(&src, &dst).unwrap(), ImportMethod::Move);
    assert!(!src.exists());
    assert_eq!(fs::read(&dst).unwrap(), data);
    assert_eq!(fs::metadata(&dst).unwrap().mtime(), mtime);
    // Nothing left behind next to the film.
    let names: Vec<_> = fs::read_dir(dst.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["film.mkv"]);
}

/// Run by the kill loop: one import, then exit.
#[test]
#[ignore = "helper process for sigkill_at_random_points_never_loses_the_film"]
fn kill_loop_child() {
    if let (Ok(src), Ok(dst)) = (std::env::var("KL_SRC"), std::env::var("KL_DST")) {
        import(Path::new(&src), Path::new(&dst)).unwrap();
    }
}

/// xorshift: enough randomness for kill delays without a dependency.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[derive(Default, Debug)]
struct Outcomes {
    old: u32,
    new: u32,
    both: u32,
}

/// Spawns importing children and SIGKILLs them after a random delay up to
/// a bit more than a full run, `rounds` times. After each kill the film must
/// be whole at exactly one place or at both; then a retry must finish.
fn kill_loop(src_dir: &Path, dst_dir: &Path, rounds: u32, len: usize) -> Outcomes {
    let exe = std::env::current_exe().unwrap();
    let data = pattern(len, 4);
    let src = src_dir.join("downloads/feed/film.mkv");
    let dst = dst_dir.join("library/9/film.mkv");
    let child = |src: &Path, dst: &Path| {
        Command::new(&exe)
            .args([
                "--exact",
                "kill_loop_child",
                "--ignored",
                "--test-threads=1",
            ])
            .env("KL_SRC", src)
            .env("KL_DST", dst)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let reset = || {
        let _ = fs::remove_dir_all(dst_dir.join("library"));
        fs::create_dir_all(src.parent().unwrap()).unwrap();
        fs::write(&src, &data).unwrap();
    };
    // How long a whole run takes, process start included.
    reset();
    let t0 = Instant::now();
    assert!(child(&src, &dst).wait().unwrap().success());
    let full = t0.elapsed().as_micros() as u64;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()));
    let mut seen = Outcomes::default();
    for round in 0..rounds {
        reset();
        let mut c = child(&src, &dst);
        std::thread::sleep(Duration::from_micros(rng.below(full * 6 / 5)));
        let _ = c.kill();
        let status = c.wait().unwrap();
        assert!(
            status.success() || status.signal() == Some(libc::SIGKILL),
            "round {round}: child failed: {status:?}"
        );
        let at_src = fs::read(&src).ok();
        let at_dst = fs::read(&dst).ok();
        for (what, got) in [("source", &at_src), ("destination", &at_dst)] {
            if let Some(b) = got {
                assert!(
                    b == &data,
                    "round {round}: partial {what} ({} bytes)",
                    b.len()
                );
            }
        }
        match (at_src.is_some(), at_dst.is_some()) {
            (true, false) => seen.old += 1,
            (false, true) => seen.new += 1,
            (true, true) => seen.both += 1,
            (false, false) => panic!("round {round}: the film is gone"),
        }
        if at_src.is_some() {
            import(&src, &dst).unwrap();
        }
        assert_eq!(fs::read(&dst).unwrap(), data, "round {round}: retry");
    }
    seen
}

#[test]
fn sigkill_at_random_points_never_loses_the_film() {
    let disk = tempfile::tempdir().unwrap();
    match mount_tmpfs() {
        // The interesting case: a cross-device copy, many steps to hit.
        Ok(m) => {
            let seen = kill_loop(disk.path(), &m.dir, 120, 16 << 20);
            eprintln!("move across file systems, 120 kills: {seen:?}");
        }
        Err(why) => skip("kill loop across file systems", &why),
    }
    // Same file system: a hard link, one atomic syscall.
    let seen = kill_loop(disk.path(), disk.path(), 40, 1 << 20);
    eprintln!("same file system, 40 kills: {seen:?}");
    match mount_image("xfs") {
        Ok(m) => {
            let seen = kill_loop(&m.dir, &m.dir, 40, 16 << 20);
            eprintln!("reflink on xfs, 40 kills: {seen:?}");
        }
        Err(why) => skip("kill loop with reflinks", &why),
    }
}
