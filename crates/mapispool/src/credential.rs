//! Turning a transport's credential setting into a password, at the moment it is needed, and
//! never letting it reach a log, an error message or a status row.

use std::fmt;
use std::time::Duration;

use crate::command::ProfileCommand;
use crate::profile::Credential;
use crate::transport_error::{TransportError, TransportErrorKind};

/// A password or token. `Debug` and `Display` print `***`, so it cannot leak through `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The secret itself, for the one place that sends it to a server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

fn auth_error(message: String) -> TransportError {
    TransportError::new(TransportErrorKind::Auth, message)
}

/// The first line of `text`, without its line ending: password tools print a newline after the
/// secret, and some print more lines after it (pass's metadata).
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// How long a `password_command` may run where the caller gives no limit of its own (the
/// transports' logins; their connect-and-login limit bounds it too).
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// Resolves `credential` for `transport`. `allow_prompt` is false under `FLUSH_NO_UI`: a
/// `password_prompt` credential then fails with `NeedsPerson` instead of asking. A
/// `password_command` may run [`COMMAND_LIMIT`]; [`resolve_within`] takes the limit.
///
/// Errors name the transport and the credential source, never the secret or the command's
/// output.
pub async fn resolve(
    credential: &Credential,
    transport: &str,
    allow_prompt: bool,
) -> Result<Secret, TransportError> {
    resolve_within(credential, transport, allow_prompt, COMMAND_LIMIT).await
}

/// [`resolve`] with a `password_command` bounded by `limit` (the profile's `[spooler]
/// timeout`): past it, or when this future is dropped, the command's whole process group is
/// killed, and the error names the command by its setting and program, never its arguments.
pub async fn resolve_within(
    credential: &Credential,
    transport: &str,
    allow_prompt: bool,
    limit: Duration,
) -> Result<Secret, TransportError> {
    match credential {
        Credential::Command(command) => {
            let program = ProfileCommand {
                setting: "password_command",
                transport,
                command,
            };
            let output = program
                .run(
                    limit,
                    std::process::Stdio::null(),
                    true,
                    TransportErrorKind::Auth,
                )
                .await?;
            let text = String::from_utf8(output.stdout).map_err(|_| {
                auth_error(format!(
                    "transport \"{transport}\": password_command printed something that is not UTF-8"
                ))
            })?;
            let secret = first_line(&text);
            if secret.is_empty() {
                return Err(auth_error(format!(
                    "transport \"{transport}\": password_command printed nothing"
                )));
            }
            Ok(Secret::new(secret))
        }
        Credential::File(path) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let meta = tokio::fs::metadata(path).await.map_err(|e| {
                    auth_error(format!(
                        "transport \"{transport}\": cannot read password_file {}: {e}",
                        path.display()
                    ))
                })?;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(auth_error(format!(
                        "transport \"{transport}\": password_file {} has mode {mode:o}, so others can read it; run `chmod 600 {}`",
                        path.display(),
                        path.display()
                    )));
                }
            }
            let text = tokio::fs::read_to_string(path).await.map_err(|e| {
                auth_error(format!(
                    "transport \"{transport}\": cannot read password_file {}: {e}",
                    path.display()
                ))
            })?;
            Ok(Secret::new(first_line(&text)))
        }
        Credential::Env(var) => std::env::var(var).map(Secret::new).map_err(|_| {
            auth_error(format!(
                "transport \"{transport}\": password_env names ${var}, which is not set"
            ))
        }),
        Credential::Keyring(service) => keyring_password(service, transport).await,
        Credential::Prompt => {
            if !allow_prompt {
                return Err(TransportError::new(
                    TransportErrorKind::NeedsPerson,
                    format!(
                        "cannot honour FLUSH_NO_UI: transport \"{transport}\" asks for its password on the terminal (password_prompt)"
                    ),
                ));
            }
            let prompt = format!("Password for transport \"{transport}\": ");
            let answer = tokio::task::spawn_blocking(move || rpassword::prompt_password(prompt))
                .await
                .map_err(|e| auth_error(format!("password prompt failed: {e}")))?
                .map_err(|e| {
                    TransportError::new(
                        TransportErrorKind::NeedsPerson,
                        format!(
                            "transport \"{transport}\": cannot ask for the password (no terminal?): {e}"
                        ),
                    )
                })?;
            Ok(Secret::new(answer))
        }
    }
}

/// The system keyring's entry for (`service`, the transport's name).
#[cfg(feature = "keyring")]
async fn keyring_password(service: &str, transport: &str) -> Result<Secret, TransportError> {
    let (service, user) = (service.to_string(), transport.to_string());
    let found = tokio::task::spawn_blocking(move || {
        keyring::Entry::new(&service, &user).and_then(|entry| entry.get_password())
    })
    .await
    .map_err(|e| auth_error(format!("keyring lookup failed: {e}")))?;
    found.map(Secret::new).map_err(|e| {
        auth_error(format!(
            "transport \"{transport}\": no password in the system keyring for it ({e}); store one under the service named by password_keyring and the transport's name"
        ))
    })
}

#[cfg(not(feature = "keyring"))]
async fn keyring_password(_service: &str, transport: &str) -> Result<Secret, TransportError> {
    Err(auth_error(format!(
        "transport \"{transport}\" reads its password from the system keyring, but this build has no keyring support; rebuild with `--features keyring`, or use password_command"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn command_gives_its_first_line() {
        let s = resolve(
            &Credential::Command("printf 'hunter2\\nmeta\\n'".into()),
            "t",
            false,
        )
        .await
        .expect("resolves");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
    }

    /// A hung `password_command` whose child started a grandchild that holds the output pipe
    /// open: waiting for the pipe's end would never return, so the time limit kills the whole
    /// group, and the error names the setting and the program, not its arguments.
    #[tokio::test]
    async fn a_hung_password_command_is_killed_with_its_grandchild_and_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        let line = format!(
            "echo $$ > {}; sh -c 'sleep 1000 & sleep 1000' --token=hunter2",
            pidfile.display()
        );
        let started = std::time::Instant::now();
        let err = resolve_within(
            &Credential::Command(line),
            "work",
            false,
            Duration::from_millis(300),
        )
        .await
        .expect_err("it hangs");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the held pipe kept it waiting"
        );
        assert_eq!(err.kind, TransportErrorKind::Auth);
        assert!(
            err.message.starts_with(
                "password_command of transport \"work\" (`echo …`) did not finish within 300ms"
            ),
            "{}",
            err.message
        );
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        let pgid = crate::command::tests::leader(&pidfile).await;
        assert!(
            crate::command::tests::group_gone(pgid).await,
            "the child and grandchild of group {pgid} still run"
        );
    }

    #[tokio::test]
    async fn a_failing_command_does_not_leak_its_output() {
        let e = resolve(
            &Credential::Command("echo hunter2; exit 3".into()),
            "work",
            false,
        )
        .await
        .expect_err("fails");
        assert_eq!(e.kind, TransportErrorKind::Auth);
        assert!(e.message.contains("\"work\""), "{}", e.message);
        assert!(!e.message.contains("hunter2"), "{}", e.message);
    }

    #[tokio::test]
    async fn files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = resolve(&Credential::File(path.clone()), "t", false)
            .await
            .expect_err("refused");
        assert!(e.message.contains("chmod 600"), "{}", e.message);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let s = resolve(&Credential::File(path), "t", false)
            .await
            .expect("ok");
        assert_eq!(s.expose(), "s3cret");
    }

    #[tokio::test]
    async fn prompt_under_no_ui_needs_a_person() {
        let e = resolve(&Credential::Prompt, "t", false)
            .await
            .expect_err("no prompt");
        assert_eq!(e.kind, TransportErrorKind::NeedsPerson);
        let e = resolve(
            &Credential::Env("MAPISPOOL_TEST_UNSET_VAR".into()),
            "t",
            false,
        )
        .await
        .expect_err("unset");
        assert!(e.message.contains("MAPISPOOL_TEST_UNSET_VAR"));
    }

    #[cfg(feature = "keyring")]
    #[tokio::test]
    async fn the_keyring_gives_the_stored_password() {
        // A test process (CI, cargo test) has no login session, so no session keyring for the
        // kernel's keyutils store: join a fresh anonymous one, as a login would have.
        #[cfg(target_os = "linux")]
        // SAFETY: KEYCTL_JOIN_SESSION_KEYRING (1) with a null name only attaches a new keyring
        // to this process; it reads no memory of ours.
        unsafe {
            libc::syscall(libc::SYS_keyctl, 1, std::ptr::null::<libc::c_char>());
        }
        let service = format!("mapispool-test-{}", std::process::id());
        let entry = keyring::Entry::new(&service, "work").expect("entry");
        entry
            .set_password("from-the-keyring")
            .expect("store a password");
        let s = resolve(&Credential::Keyring(service.clone()), "work", false)
            .await
            .expect("resolves");
        assert_eq!(s.expose(), "from-the-keyring");
        let missing = resolve(&Credential::Keyring(service), "other", false)
            .await
            .expect_err("no entry for another transport");
        assert!(
            missing
                .message
                .contains("no password in the system keyring"),
            "{}",
            missing.message
        );
        let _ = entry.delete_credential();
    }

    #[cfg(not(feature = "keyring"))]
    #[tokio::test]
    async fn without_the_feature_the_keyring_says_how_to_get_it() {
        let e = resolve(&Credential::Keyring("mapispool".into()), "work", false)
            .await
            .expect_err("no keyring in this build");
        assert!(e.message.contains("--features keyring"), "{}", e.message);
    }
}
