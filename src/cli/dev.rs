//! `strongroom dev`: a working vault from one command, on the embedded store.
//!
//! Everything lives in one directory (mode 0700): the SQLite database with its `-wal` and
//! `-shm` files, a generated master key, a demo policy file, the audit checkpoints and
//! `dev-credentials.json` with one principal per role of a demo tenant, every file mode 0600.
//! A second start with the same directory reopens all of it. It serves plain HTTP on loopback
//! only: this is for a laptop, not for card data.
//!
//! The master key is written marked as a development key (`crypto::keys::DEV_KEY_PREFIX`),
//! so that `serve` and `migrate` refuse it if it is ever copied into a real environment. A
//! directory from before the mark had its key in plain base64: it is still read, and marked.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::admin::{CliError, command_audit_trail, principal_admin, write_private};
use super::args::DEFAULT_DATA_DIR;
use crate::clock::{Clock, SystemClock};
use crate::config::ServeConfig;
use crate::crypto::keys::{DEV_KEY_PREFIX, MasterKey, MasterKeyError, MasterKeyKind};
use crate::crypto::totp::{STEP_SECONDS, TotpSecret};
use crate::domain::Role;
use crate::random::SystemRandom;
use crate::service::principals::NewPrincipalRequest;
use crate::service::{KeyService, KeySettings};
use crate::startup::{Application, shutdown_signal};
use crate::store::{PrincipalStore, SqliteStore, Store};

/// The demo tenant.
pub const TENANT: &str = "demo";

/// The demo policies: a payment service detokenizes at once; people need another person's
/// approval and their TOTP codes.
const POLICIES: &str = r#"# Demo policies of `strongroom dev` (see README "Policies").
[[policy]]
name = "checkout"
roles = ["detokenizer"]
purposes = ["payment_authorization", "recurring_billing"]
approvals = 0
max_duration_seconds = 300
max_uses = 1000
any_token = true

[[policy]]
name = "support-chargeback"
roles = ["requester"]
purposes = ["chargeback", "dispute"]
approvals = 1
max_duration_seconds = 3600
max_uses = 5
max_tokens = 5
mfa = true
"#;

/// One principal per role; people get a second factor.
const DEMO: &[(&str, Role, bool)] = &[
    ("checkout", Role::Tokenizer, false),
    ("payments", Role::Detokenizer, false),
    ("alice", Role::Requester, true),
    ("bob", Role::Approver, true),
    ("compliance", Role::Auditor, false),
    ("ops", Role::Admin, false),
];

/// `dev-credentials.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The demo principals.
    pub principals: Vec<DevPrincipal>,
}

/// One demo principal and its secrets (a local demo's, shown on purpose).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevPrincipal {
    /// Its id (for `principal disable --id`, `unlock-totp --id`, `guard import-open
    /// --principal`). A directory from before ids were written gets them on its next start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<uuid::Uuid>,
    /// Its name in the demo tenant.
    pub name: String,
    /// Its roles.
    pub roles: Vec<Role>,
    /// Its API key.
    pub key: String,
    /// Its TOTP secret (base32), for people.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub totp_secret: Option<String>,
}

/// `strongroom totp code NAME`: prints the current one-time code of demo person `name` and how
/// long it stays valid, from the dev data directory's credentials.
pub fn totp(dir: &Path, name: &str) -> Result<(), CliError> {
    let file = dir.join("dev-credentials.json");
    let text = std::fs::read_to_string(&file).map_err(|_| {
        CliError(format!(
            "no dev vault in {}: run `strongroom dev` first",
            dir.display()
        ))
    })?;
    let credentials: Credentials = serde_json::from_str(&text)
        .map_err(|_| CliError(format!("{} is not readable", file.display())))?;
    let person = credentials
        .principals
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = credentials
                .principals
                .iter()
                .filter(|p| p.totp_secret.is_some())
                .map(|p| p.name.as_str())
                .collect();
            CliError(format!(
                "no demo principal named {name:?}; people with one-time codes: {}",
                names.join(", ")
            ))
        })?;
    let secret = person
        .totp_secret
        .as_deref()
        .and_then(TotpSecret::from_base32)
        .ok_or_else(|| CliError(format!("{name} has no second factor (only people do)")))?;
    let now = u64::try_from(SystemClock.now().timestamp()).unwrap_or(0);
    let left = STEP_SECONDS - now % STEP_SECONDS;
    // The code alone on standard output, so that `$(strongroom totp code bob)` is the code.
    println!("{}", secret.code_at(now));
    eprintln!("valid for {left} more seconds; each code is accepted once");
    Ok(())
}

/// Runs the local vault in `dir` on `listen` until Ctrl-C.
pub async fn run(listen: SocketAddr, dir: &Path) -> Result<(), CliError> {
    let started = Instant::now();
    if !listen.ip().is_loopback() {
        return Err(CliError(format!(
            "dev serves plain HTTP on loopback only, not {listen}: use `serve` with TLS"
        )));
    }
    create_private_dir(dir)?;
    // Files an earlier version left readable by others are closed first.
    restrict_known_files(dir)?;
    let key_file = dir.join("master.key");
    let master = master_key(&key_file)?;
    let db_file = dir.join("strongroom.db");
    // SQLite creates the `-wal` and `-shm` files with the mode of the database file, so the
    // database file is made first, 0600, rather than left to SQLite and the umask.
    create_private_file(&db_file)?;
    let url = format!("sqlite://{}", db_file.display());
    let store = SqliteStore::connect(&url, 4).await?;
    store.migrate().await?;
    // SQLite has made its `-wal` and `-shm` files by now, with the database file's mode (as
    // the test of this checks); closing them again costs nothing and holds if that changes.
    restrict_known_files(dir)?;
    let policy_file = dir.join("policies.toml");
    if !policy_file.exists() {
        write_private(&policy_file, POLICIES.as_bytes())?;
    }
    let checkpoints = dir.join("audit-checkpoints.jsonl");
    let credentials_file = dir.join("dev-credentials.json");
    let credentials = if credentials_file.exists() {
        let text = std::fs::read_to_string(&credentials_file)?;
        let mut credentials = serde_json::from_str::<Credentials>(&text).map_err(|_| {
            CliError(format!(
                "{} is not readable: remove the directory to start afresh",
                credentials_file.display()
            ))
        })?;
        if credentials.principals.iter().any(|p| p.id.is_none()) {
            let listed = store.list_principals(Some(TENANT)).await?;
            for p in &mut credentials.principals {
                p.id = listed
                    .iter()
                    .find(|l| l.record.principal.name == p.name)
                    .map(|l| l.record.principal.id.0);
            }
            replace_private(
                &credentials_file,
                serde_json::to_string_pretty(&credentials)?.as_bytes(),
            )?;
        }
        credentials
    } else {
        let credentials = seed(store, master_key(&key_file)?, &checkpoints).await?;
        write_private(
            &credentials_file,
            serde_json::to_string_pretty(&credentials)?.as_bytes(),
        )?;
        credentials
    };

    let mut config = ServeConfig::new(url, master);
    config.listen = listen;
    config.policy_file = Some(policy_file);
    config.audit_checkpoint_file = Some(checkpoints);
    config.db_pool_size = 4;
    let app = Application::build(config).await?;
    print_banner(
        &format!("http://{}", app.local_addr()),
        dir,
        &credentials,
        started.elapsed(),
    );
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}

async fn seed(
    store: SqliteStore,
    master: MasterKey,
    checkpoints: &Path,
) -> Result<Credentials, CliError> {
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(store);
    let audit = command_audit_trail(&store, Some(&master), Some(checkpoints.to_owned())).await?;
    let keys = KeyService::load(
        store.clone(),
        master,
        std::sync::Arc::new(SystemRandom::new()),
        std::sync::Arc::new(SystemClock),
        KeySettings::default(),
        audit.clone(),
    )
    .await?;
    let admin = principal_admin(Some(std::sync::Arc::new(keys)), audit);
    let mut principals = Vec::with_capacity(DEMO.len());
    for (name, role, totp) in DEMO {
        let created = admin
            .create(NewPrincipalRequest {
                tenant: TENANT.to_owned(),
                name: (*name).to_owned(),
                roles: vec![*role],
                expires_at: None,
                totp: *totp,
            })
            .await?;
        principals.push(DevPrincipal {
            id: Some(created.record.principal.id.0),
            name: (*name).to_owned(),
            roles: vec![*role],
            key: created.key.expose().to_owned(),
            totp_secret: created.totp.as_ref().map(|t| t.to_base32().to_string()),
        });
    }
    Ok(Credentials { principals })
}

fn key_of<'a>(credentials: &'a Credentials, name: &str) -> &'a str {
    credentials
        .principals
        .iter()
        .find(|p| p.name == name)
        .map_or("", |p| p.key.as_str())
}

fn print_banner(base: &str, dir: &Path, credentials: &Credentials, ready_in: Duration) {
    let mut out = String::new();
    out.push_str(&format!(
        "\nStrongroom dev vault ready at {base} in {} ms (data in {})\n\
         Plain HTTP on loopback, an embedded store and demo keys: for trying it out, never for real card data.\n\n\
         Demo principals of tenant `{TENANT}` (also in {}):\n",
        ready_in.as_millis(),
        dir.display(),
        dir.join("dev-credentials.json").display()
    ));
    for p in &credentials.principals {
        let roles: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
        out.push_str(&format!(
            "  {:<11} {:<12} {}",
            p.name,
            roles.join(","),
            p.key
        ));
        if let Some(secret) = &p.totp_secret {
            out.push_str(&format!("  (TOTP secret {secret})"));
        }
        out.push('\n');
    }
    // The code command as it can be pasted: this binary (its path when it is not the
    // `strongroom` on the PATH, as under `cargo run`) and the data directory when it is not the
    // default one.
    let totp = if dir == Path::new(DEFAULT_DATA_DIR) {
        format!("{} totp code", shell_quoted(&program()))
    } else {
        format!(
            "{} totp code --data-dir {}",
            shell_quoted(&program()),
            shell_quoted(&dir.display().to_string())
        )
    };
    out.push_str(&format!(
        "People's current one-time codes (to request and approve): {totp} NAME\n\n\
         The people's console: {base}/console\n\
         \x20 1. sign in as alice (requester) with her key and `{totp} alice`; ask for a card\n\
         \x20 2. sign in as bob (approver) with `{totp} bob`; review and approve\n\
         \x20 3. sign in as alice again; Reveal shows the card for 60 seconds, Release ends the grant\n\
         \x20 4. sign in as compliance (auditor, no code): the audit trail and the usage report\n\
         \x20 (a code is good once: wait for the next one, every 30 seconds, to use it again)\n"
    ));
    let try_it = r#"
Try it from a shell, a payment service first:
# 1. Tokenize a card number
TOKEN=$(curl -s @BASE@/v1/tokens -H 'Authorization: Bearer @TOKENIZER@' \
  -H 'Content-Type: application/json' -d '{"value": "4111 1111 1111 1111"}' \
  | sed 's/.*"token":"\([^"]*\)".*/\1/')
# 2. A payment service asks for a grant (auto-approved by the `checkout` policy)
GRANT=$(curl -s @BASE@/v1/access-requests -H 'Authorization: Bearer @PAYMENTS@' \
  -H 'Content-Type: application/json' \
  -d '{"any_token": true, "purpose": "payment_authorization", "reason": "order 1001", "duration_seconds": 60, "max_uses": 5}' \
  | sed 's/.*"grant":"\([^"]*\)".*/\1/')
# 3. Detokenize under it
curl -s @BASE@/v1/detokenize -H 'Authorization: Bearer @PAYMENTS@' -H "X-Access-Grant: $GRANT" \
  -H 'Content-Type: application/json' -d "{\"tokens\": [\"$TOKEN\"]}"

# The people's flow (the `support-chargeback` policy: another person approves, both with a code)
# 4. alice (requester) asks for that card for a dispute, with her one-time code
REQUEST=$(curl -s @BASE@/v1/access-requests -H 'Authorization: Bearer @ALICE@' \
  -H 'Content-Type: application/json' \
  -d "{\"tokens\": [\"$TOKEN\"], \"purpose\": \"dispute\", \"reason\": \"chargeback CB-77\", \"duration_seconds\": 600, \"totp\": \"$(@TOTP@ alice)\"}" \
  | sed 's/^{"id":"\([^"]*\)".*/\1/')
# 5. bob (approver) approves it with his
curl -s @BASE@/v1/access-requests/$REQUEST/approve -H 'Authorization: Bearer @BOB@' \
  -H 'Content-Type: application/json' -d "{\"comment\": \"CB-77 checked\", \"totp\": \"$(@TOTP@ bob)\"}"
# 6. alice reveals the card: the vault spends one use of her grant (she never holds the JWT)
curl -s @BASE@/v1/access-requests/$REQUEST/reveal -H 'Authorization: Bearer @ALICE@' \
  -H 'Content-Type: application/json' -d "{\"tokens\": [\"$TOKEN\"]}"

Ctrl-C stops it; `strongroom dev` again picks up where it left off.
"#;
    out.push_str(
        &try_it
            .replace("@BASE@", base)
            .replace("@TOKENIZER@", key_of(credentials, "checkout"))
            .replace("@PAYMENTS@", key_of(credentials, "payments"))
            .replace("@ALICE@", key_of(credentials, "alice"))
            .replace("@BOB@", key_of(credentials, "bob"))
            .replace("@TOTP@", &totp),
    );
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

/// The dev vault's master key: generated on first start (marked as a development key),
/// read afterwards. A key from before the mark (plain base64) is read too, and rewritten
/// marked.
fn master_key(path: &Path) -> Result<MasterKey, CliError> {
    if !path.exists() {
        let key = MasterKey::generate_dev_text(&SystemRandom::new())?;
        write_private(path, key.as_bytes())?;
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path)?);
    let (key, kind) = MasterKey::from_text(&text).map_err(|e| unusable_key(path, e))?;
    if kind == MasterKeyKind::Production {
        let mut marked = zeroize::Zeroizing::new(String::from(DEV_KEY_PREFIX));
        marked.push_str(text.trim());
        replace_private(path, marked.as_bytes())?;
    }
    Ok(key)
}

/// Why `master.key` cannot be used, naming the file rather than the variable.
fn unusable_key(path: &Path, e: MasterKeyError) -> CliError {
    let reason = match e {
        MasterKeyError::Weak(weakness) => format!("is not a random key: {weakness}"),
        MasterKeyError::Missing
        | MasterKeyError::NotBase64
        | MasterKeyError::WrongLength
        | MasterKeyError::Development
        | MasterKeyError::Hsm(_)
        | MasterKeyError::Both
        | MasterKeyError::File(_) => "does not hold a master key".to_owned(),
    };
    CliError(format!(
        "{} {reason}: remove the directory to start afresh",
        path.display()
    ))
}

/// `text` as one word of a POSIX shell: as it is when it holds nothing the shell would read
/// (a path without spaces), else in single quotes.
fn shell_quoted(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:,=@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// How to run this binary from a shell: `strongroom` when that is on the PATH and is this
/// binary, else its full path (under `cargo run` it is not on the PATH).
fn program() -> String {
    let exe = std::env::current_exe().and_then(|p| p.canonicalize()).ok();
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("strongroom"))
            .find(|p| p.is_file())
            .and_then(|p| p.canonicalize().ok())
    });
    match (exe, on_path) {
        (Some(exe), Some(found)) if exe == found => "strongroom".to_owned(),
        (Some(exe), _) => exe.display().to_string(),
        (None, _) => "strongroom".to_owned(),
    }
}

/// Creates the data directory, owner only (0700). An existing directory open to others is
/// closed if it is empty, and refused otherwise: its files may already have been read, and
/// it may not be ours to change.
fn create_private_dir(dir: &Path) -> Result<(), CliError> {
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            if std::fs::read_dir(dir)?.next().is_some() {
                return Err(CliError(format!(
                    "{} is open to other users (mode {mode:o}) and not empty: use a new --data-dir, or `chmod 700` it",
                    dir.display()
                )));
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// The files `dev` keeps in its directory, besides those it writes with [`write_private`].
const KNOWN_FILES: &[&str] = &[
    "master.key",
    "dev-credentials.json",
    "policies.toml",
    "audit-checkpoints.jsonl",
    "strongroom.db",
    "strongroom.db-wal",
    "strongroom.db-shm",
    "strongroom.db-journal",
];

/// Sets every file of ours that exists in `dir` to owner only (0600). Only these names: the
/// directory may hold other files that are not ours to change.
fn restrict_known_files(dir: &Path) -> Result<(), CliError> {
    #[cfg(unix)]
    for name in KNOWN_FILES {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates `path` as an empty file readable by its owner only (0600), or leaves an existing
/// one as it is (its mode is [`restrict_known_files`]'s business).
fn create_private_file(path: &Path) -> Result<(), CliError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?;
    Ok(())
}

/// Replaces a file's content at once (a new 0600 file renamed over it), so that a crash
/// leaves the old content or the new, never half of one.
fn replace_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    let next = path.with_file_name(name);
    match std::fs::remove_file(&next) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    write_private(&next, bytes)?;
    std::fs::rename(&next, path)?;
    Ok(())
}

/// The default data directory.
pub fn default_dir() -> PathBuf {
    PathBuf::from(".strongroom-dev")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_goes_into_the_banner_as_one_shell_word() {
        assert_eq!(
            shell_quoted("/work/target/release/strongroom"),
            "/work/target/release/strongroom"
        );
        assert_eq!(shell_quoted("/tmp/with space/dev"), "'/tmp/with space/dev'");
        assert_eq!(shell_quoted("/tmp/it's"), r"'/tmp/it'\''s'");
        assert_eq!(shell_quoted("/tmp/$(reboot)"), "'/tmp/$(reboot)'");
        assert_eq!(shell_quoted(""), "''");
    }
}
