//! The set-up every fault test shares: a profile with the faulty transport under test beside a
//! healthy `dir` transport (which must still deliver in the same flush), a spooler timeout of
//! 1 s, and the flush the tests drive. Used by faults.rs and tls_faults.rs.

use std::path::PathBuf;

use mapispool::transport::dir::mailbox_name;
use mapispool::{FlushFlags, FlushReport, Profile, Session, Submission};

pub struct Case {
    pub dir: tempfile::TempDir,
    pub post_office: PathBuf,
}

impl Case {
    /// Writes `contents` into the case's directory (a CA file, say) and gives its path.
    // Each test binary compiles this module on its own; only tls_faults.rs writes files.
    #[allow(dead_code)]
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write a file for the case");
        path
    }

    pub fn new() -> Case {
        let dir = tempfile::tempdir().expect("tempdir");
        let post_office = dir.path().join("po");
        std::fs::create_dir_all(
            post_office
                .join(mailbox_name("peer@local.test"))
                .join("new"),
        )
        .expect("peer's mailbox");
        Case { dir, post_office }
    }

    pub async fn logon(&self, mail_transport: &str) -> Session {
        let text = format!(
            "[store]\npath = \"{store}\"\n\n[spooler]\ntimeout = \"1s\"\n\n{mail_transport}\n[[transport]]\nname = \"local\"\naddress = \"me@local.test\"\n[transport.outbound]\nkind = \"dir\"\npath = \"{po}\"\n[transport.inbound]\nkind = \"dir\"\npath = \"{po}\"\n",
            store = self.dir.path().join("store.db").display(),
            po = self.post_office.display()
        );
        let path = self.dir.path().join("profile.toml");
        let profile = Profile::from_str_at(&text, &path).expect("the profile");
        let session = Session::logon_local(profile).await.expect("logon");
        // One letter for the healthy transport, to move in the same flush as the fault.
        session
            .submit(
                Submission {
                    transport: Some("local".into()),
                    ..Submission::default()
                },
                &b"From: me@local.test\r\nTo: peer@local.test\r\nSubject: healthy\r\nMessage-ID: <healthy@fault.test>\r\n\r\nstill moving\r\n"[..],
            )
            .await
            .expect("submit to local");
        session
    }

    pub fn healthy_delivered(&self) -> usize {
        std::fs::read_dir(
            self.post_office
                .join(mailbox_name("peer@local.test"))
                .join("new"),
        )
        .map(|d| d.count())
        .unwrap_or(0)
    }
}

pub async fn flush(session: &Session, flags: FlushFlags) -> FlushReport {
    session
        .spooler_status()
        .flush_queues(None, flags)
        .await
        .expect("the flush itself runs")
}
