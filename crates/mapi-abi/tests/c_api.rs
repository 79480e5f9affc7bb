//! MAPI's C and C++ interface, seen from C and C++: the programs in `tests/c` are built with
//! gcc/g++ against the installed headers, `mapispool.pc` and `libmapispool.so` (as
//! `install.sh` lays them out), and run under Valgrind, which must report no invalid access and
//! no leak.
//!
//! - `layout.c`: every size and offset of MAPI's structures and vtables, C's view against the
//!   library's;
//! - `flush.cpp` / `flush.c`: the two "sending or receiving a message on demand" procedures
//!   from Microsoft's documentation, against two `dir` profiles sharing a post office (as
//!   `mapispool demo` builds them); the mail must arrive in bob's Inbox;
//! - `api.c`: the rest of the interface, call by call.
//!
//! gcc, g++, pkg-config and Valgrind are required: under CI (env `CI` set) their absence fails
//! the test; elsewhere it is skipped with the reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use mapispool::store::Folder;
use mapispool::{Profile, Session, Submission};

fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Whether `program` runs here; under CI its absence fails the test.
fn installed(program: &str, package: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !under_ci(),
            "{program} is missing: install Debian's {package} (scripts/peers/install.sh does)"
        );
        eprintln!("skipped: {program} is not installed (Debian package {package})");
    }
    found
}

fn tools() -> bool {
    installed("gcc", "gcc")
        && installed("g++", "g++")
        && installed("pkg-config", "pkg-config")
        && installed("valgrind", "valgrind")
}

/// target/<profile>: where cargo put libmapispool_abi.so for this test binary.
fn cargo_out() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/c_api-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps")
        .to_path_buf()
}

struct Built {
    prefix: PathBuf,
    bin: PathBuf,
}

fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Installs the library into target/<profile>/mapi-abi-c/prefix with install.sh and builds the
/// four programs with the flags pkg-config gives, warnings as errors. Once per test run.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = cargo_out().join("mapi-abi-c");
        let prefix = root.join("prefix");
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("create the build directory");
        let out = Command::new(here.join("install.sh"))
            .arg(&prefix)
            .arg(cargo_out())
            .output()
            .expect("run install.sh");
        check("install.sh", &out);
        let pkg = |flag: &str| -> Vec<String> {
            let out = Command::new("pkg-config")
                .arg(flag)
                .arg("mapispool")
                .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
                .output()
                .expect("run pkg-config");
            check("pkg-config", &out);
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        let (cflags, libs) = (pkg("--cflags"), pkg("--libs"));
        for (compiler, source, std, name) in [
            ("gcc", "layout.c", "-std=gnu11", "layout"),
            ("gcc", "api.c", "-std=gnu11", "api"),
            ("gcc", "flush.c", "-std=gnu11", "flush-c"),
            ("gcc", "logon.c", "-std=gnu11", "logon"),
            ("g++", "flush.cpp", "-std=c++17", "flush-cpp"),
        ] {
            let out = Command::new(compiler)
                .args([std, "-Wall", "-Wextra", "-Werror", "-pthread", "-g", "-o"])
                .arg(bin.join(name))
                .arg(here.join("tests/c").join(source))
                .args(&cflags)
                .args(&libs)
                .output()
                .expect("run the compiler");
            check(&format!("{compiler} {source}"), &out);
        }
        // The static library: layout.c linked against libmapispool.a and the libraries
        // mapispool.pc's Libs.private names.
        let private: Vec<String> = {
            let out = Command::new("pkg-config")
                .args(["--static", "--libs-only-l", "mapispool"])
                .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
                .output()
                .expect("run pkg-config");
            check("pkg-config --static", &out);
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter(|l| *l != "-lmapispool")
                .map(str::to_owned)
                .collect()
        };
        let out = Command::new("gcc")
            .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-g", "-o"])
            .arg(bin.join("layout-static"))
            .arg(here.join("tests/c/layout.c"))
            .args(&cflags)
            .arg(prefix.join("lib/libmapispool.a"))
            .args(&private)
            .output()
            .expect("run gcc");
        check("gcc layout.c with libmapispool.a", &out);
        // The program README.md shows, exactly as it is there.
        let readme = std::fs::read_to_string(here.join("../../README.md")).expect("README.md");
        let program = readme_program(&readme);
        let source = root.join("readme-flush.cpp");
        std::fs::write(&source, program).expect("write readme-flush.cpp");
        let out = Command::new("g++")
            .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-g", "-o"])
            .arg(bin.join("readme-flush"))
            .arg(&source)
            .args(&cflags)
            .args(&libs)
            .output()
            .expect("run g++");
        check("g++ README's flush.cpp", &out);
        Built { prefix, bin }
    })
}

/// The first C++ block of README.md's "MAPI from C and C++" section.
fn readme_program(readme: &str) -> String {
    let section = readme
        .split("## MAPI from C and C++")
        .nth(1)
        .expect("README.md has a section \"MAPI from C and C++\"");
    let block = section
        .split("```cpp\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the section has a ```cpp block");
    format!("{block}\n")
}

/// Runs a built program under Valgrind (memcheck: invalid accesses, and definite or indirect
/// leaks, are errors that make it exit 99).
fn valgrind(program: &str, args: &[&Path], cwd: &Path) -> Output {
    let b = built();
    let out = Command::new("valgrind")
        .args([
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect",
            "--error-exitcode=99",
        ])
        .arg(b.bin.join(program))
        .args(args)
        .current_dir(cwd)
        .env("LD_LIBRARY_PATH", b.prefix.join("lib"))
        // MAPILogonEx finds a profile given by name in $XDG_CONFIG_HOME/mapispool.
        .env("XDG_CONFIG_HOME", cwd.join("config"))
        .output()
        .expect("run valgrind");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ERROR SUMMARY: 0 errors"),
        "Valgrind reports errors for {program}:\n{stderr}"
    );
    check(program, &out);
    out
}

/// alice (transports "local", whose status object has FlushQueues, and "relay", whose has
/// not) and bob ("local"), on one post-office directory, as `mapispool demo` makes them.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let po = dir.path().join("postoffice");
        let transport = |name: &str, address: &str, flush: bool| {
            format!(
                "[[transport]]\nname = \"{name}\"\naddress = \"{address}\"\nflush_queues = {flush}\n\
                 [transport.outbound]\nkind = \"dir\"\npath = \"{po}\"\n\
                 [transport.inbound]\nkind = \"dir\"\npath = \"{po}\"\n",
                po = po.display()
            )
        };
        let alice = format!(
            "[store]\npath = \"alice.db\"\n\n{}\n{}",
            transport("local", "alice@localhost", true),
            transport("relay", "alice.relay@localhost", false)
        );
        let bob = format!(
            "[store]\npath = \"bob.db\"\n\n{}",
            transport("local", "bob@localhost", true)
        );
        std::fs::write(dir.path().join("alice.toml"), alice).expect("write alice.toml");
        std::fs::write(dir.path().join("bob.toml"), bob).expect("write bob.toml");
        Sandbox { dir }
    }

    fn profile(&self, who: &str) -> PathBuf {
        self.dir.path().join(format!("{who}.toml"))
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Runtime::new().expect("a tokio runtime")
    }

    /// Both log on once (which makes bob's mailbox in the post office), and alice queues one
    /// message to bob by each of her transports. Returns the subjects.
    fn queue_mail(&self) -> Vec<String> {
        Self::runtime().block_on(async {
            let bob = Session::logon(Profile::load(&self.profile("bob")).expect("bob.toml"))
                .await
                .expect("bob logs on");
            let alice = Session::logon(Profile::load(&self.profile("alice")).expect("alice.toml"))
                .await
                .expect("alice logs on");
            let mut subjects = Vec::new();
            for t in ["local", "relay"] {
                let subject = format!("From C, via {t}");
                let text = format!(
                    "From: alice@localhost\r\nTo: bob@localhost\r\nSubject: {subject}\r\n\r\nHello.\r\n"
                );
                alice
                    .submit(
                        Submission {
                            transport: Some(t.to_string()),
                            ..Submission::default()
                        },
                        text.as_bytes(),
                    )
                    .await
                    .expect("alice submits");
                subjects.push(subject);
            }
            alice.logoff().await;
            bob.logoff().await;
            subjects
        })
    }

    /// The subjects in bob's Inbox and the number of messages in alice's Outbox.
    fn outcome(&self) -> (Vec<String>, usize) {
        Self::runtime().block_on(async {
            let bob = Session::logon(Profile::load(&self.profile("bob")).expect("bob.toml"))
                .await
                .expect("bob logs on");
            let alice = Session::logon(Profile::load(&self.profile("alice")).expect("alice.toml"))
                .await
                .expect("alice logs on");
            let inbox = bob.messages(Folder::Inbox).await.expect("bob's Inbox");
            let outbox = alice
                .messages(Folder::Outbox)
                .await
                .expect("alice's Outbox");
            alice.logoff().await;
            bob.logoff().await;
            (inbox.into_iter().map(|m| m.subject).collect(), outbox.len())
        })
    }
}

/// One procedure, one program: the mail is queued, the program logs alice then bob on and
/// runs the procedure in each session, and every message is then in bob's Inbox.
fn procedure(program: &str, mode: &str) {
    if !tools() {
        return;
    }
    let sandbox = Sandbox::new();
    let subjects = sandbox.queue_mail();
    let (inbox, outbox) = sandbox.outcome();
    assert!(
        inbox.is_empty(),
        "nothing moves before the flush: {inbox:?}"
    );
    assert_eq!(outbox, 2, "alice's two messages wait in her Outbox");

    let mode = Path::new(mode);
    let (alice, bob) = (sandbox.profile("alice"), sandbox.profile("bob"));
    let out = valgrind(program, &[mode, &alice, &bob], sandbox.dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);

    let (inbox, outbox) = sandbox.outcome();
    for s in &subjects {
        assert!(
            inbox.contains(s),
            "\"{s}\" is not in bob's Inbox {inbox:?}; the program said:\n{stdout}"
        );
    }
    assert_eq!(outbox, 0, "alice's Outbox is empty after the flush");
    if mode == Path::new("each") {
        assert!(
            stdout.contains("local: FlushQueues on its own status object: 0x00000000"),
            "{stdout}"
        );
        assert!(
            stdout.contains("relay: FlushQueues on the spooler, targeted: 0x00000000"),
            "{stdout}"
        );
    } else {
        assert!(
            stdout.contains("spooler: FlushQueues 0x00000000"),
            "{stdout}"
        );
    }
}

#[test]
fn layout_seen_from_c_is_the_library_s() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The shared and the static library.
    for program in ["layout", "layout-static"] {
        let out = valgrind(program, &[], dir.path());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(", 0 differences"),
            "{program}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn cpp_flush_all_through_the_spooler() {
    procedure("flush-cpp", "all");
}

#[test]
fn cpp_flush_each_transport() {
    procedure("flush-cpp", "each");
}

#[test]
fn c_flush_all_through_the_spooler() {
    procedure("flush-c", "all");
}

#[test]
fn c_flush_each_transport() {
    procedure("flush-c", "each");
}

#[test]
fn c_api_call_by_call() {
    if !tools() {
        return;
    }
    let sandbox = Sandbox::new();
    // The same profile, also by name: config/mapispool/by-name.toml.
    let config = sandbox.dir.path().join("config/mapispool");
    std::fs::create_dir_all(&config).expect("create the config directory");
    std::fs::copy(sandbox.profile("alice"), config.join("by-name.toml")).expect("copy alice.toml");
    let out = valgrind(
        "api",
        &[&sandbox.profile("alice"), Path::new("by-name")],
        sandbox.dir.path(),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("api: 0 failed checks"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn readme_program_moves_the_mail() {
    if !tools() {
        return;
    }
    let sandbox = Sandbox::new();
    let subjects = sandbox.queue_mail();
    for who in ["alice", "bob"] {
        let out = valgrind("readme-flush", &[&sandbox.profile(who)], sandbox.dir.path());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("FlushQueues: 0x00000000"),
            "{who}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let (inbox, outbox) = sandbox.outcome();
    for s in &subjects {
        assert!(inbox.contains(s), "\"{s}\" is not in bob's Inbox {inbox:?}");
    }
    assert_eq!(outbox, 0);
}

#[test]
fn logon_with_mapi_force_download_receives_before_it_returns() {
    if !tools() {
        return;
    }
    let sandbox = Sandbox::new();
    let subjects = sandbox.queue_mail();
    let (alice, bob) = (sandbox.profile("alice"), sandbox.profile("bob"));
    // alice sends; the mail waits in the post office for bob.
    valgrind("flush-c", &[Path::new("all"), &alice], sandbox.dir.path());
    // MAPI_EXTENDED | MAPI_NEW_SESSION: a logon alone receives nothing...
    valgrind("logon", &[Path::new("0x22"), &bob], sandbox.dir.path());
    assert!(
        sandbox.outcome().0.is_empty(),
        "a plain logon does not download"
    );
    // ...with MAPI_FORCE_DOWNLOAD it does, before MAPILogonEx returns.
    valgrind("logon", &[Path::new("0x1022"), &bob], sandbox.dir.path());
    let (inbox, _) = sandbox.outcome();
    for s in &subjects {
        assert!(inbox.contains(s), "\"{s}\" is not in bob's Inbox {inbox:?}");
    }
}
