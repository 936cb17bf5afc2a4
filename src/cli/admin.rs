//! What every administrative command shares: the database and checkpoint arguments, the
//! master key from the environment, and the command's own audit chain. Used by the commands,
//! `cli::guard` and `cli::dev`, and importing none of them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::clock::SystemClock;
use crate::crypto::keys::{MasterKey, MasterKeyError, MasterKeyKind};
use crate::metrics::Metrics;
use crate::random::SystemRandom;
use crate::service::keys::{KeyService, load_checkpoint_key};
use crate::service::principals::PrincipalAdmin;
use crate::service::{Anchor, AuditTrail};
use crate::store::{self, DatabaseUrl, SchemaStatus, Store};

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Where the vault's data is: postgres://USER:PASSWORD@HOST:5432/DATABASE (PostgreSQL:
    /// production, any number of instances) or sqlite:///PATH/vault.db (the embedded store:
    /// one node, one writer). Never printed.
    // Taken as it is (clap would echo a refused value, password and all): `store::open`
    // refuses another engine's URL naming only its scheme.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: DatabaseUrl,
}

#[derive(Debug, Clone, Args)]
pub struct CheckpointArgs {
    /// File of audit checkpoints (JSON lines, appended; keep it off the database host).
    #[arg(long, env = "STRONGROOM_AUDIT_CHECKPOINT_FILE")]
    pub audit_checkpoint_file: Option<PathBuf>,
}

/// A failed command: the message to print and exit with status 1.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

/// The store at the URL, refusing a schema that is not current.
pub async fn connect_current(db: &DatabaseArgs) -> Result<Arc<dyn Store>, CliError> {
    let store = store::open(&db.database_url, 2).await?;
    match store
        .schema_status()
        .await
        .map_err(|e| as_user(e, &db.database_url))?
    {
        SchemaStatus::Current => Ok(store),
        _ => Err(CliError(
            "the database schema is not current: run `strongroom migrate` first".into(),
        )),
    }
}

/// A store's refusal, naming the database user when it lacked a privilege (the URL's user;
/// never its password).
pub fn as_user(e: store::StoreError, url: &DatabaseUrl) -> CliError {
    match (e.is_permission_denied(), url.user()) {
        (true, Some(user)) => CliError(format!("{e} (connected as user \"{user}\")")),
        _ => CliError(e.to_string()),
    }
}

/// The production master key from the environment: refuses a missing, malformed, weak or
/// development key.
pub fn master_key_from_env() -> Result<MasterKey, MasterKeyError> {
    match master_key_from_env_of_any_kind()? {
        (key, MasterKeyKind::Production) => Ok(key),
        (_, MasterKeyKind::Development) => Err(from_key_file(MasterKeyError::Development)),
    }
}

/// The variable naming an HSM-held master key (`module=…;token=…;label=…`).
pub const PKCS11_VARIABLE: &str = "STRONGROOM_MASTER_KEY_PKCS11";

/// The master key from the environment and its kind: the HSM key that
/// `STRONGROOM_MASTER_KEY_PKCS11` names, or `STRONGROOM_MASTER_KEY`; refuses a missing,
/// malformed or weak key but takes a development one.
pub fn master_key_from_env_of_any_kind() -> Result<(MasterKey, MasterKeyKind), MasterKeyError> {
    let text = master_key_text()?;
    let spec = std::env::var(PKCS11_VARIABLE).unwrap_or_default();
    match (text.trim().is_empty(), spec.trim().is_empty()) {
        (false, false) => Err(MasterKeyError::Both),
        (true, false) => Ok((hsm_master_key(&spec)?, MasterKeyKind::Production)),
        (false, true) => {
            let (key, kind) = MasterKey::from_text(&text).map_err(from_key_file)?;
            Ok(match key_file_named() {
                Some(_) => (key.with_origin("file"), kind),
                None => (key, kind),
            })
        }
        (true, true) => Err(MasterKeyError::Missing),
    }
}

/// The variable naming a file that holds the master key.
pub const KEY_FILE_VARIABLE: &str = "STRONGROOM_MASTER_KEY_FILE";

/// The master key's text, from `STRONGROOM_MASTER_KEY` or from the file
/// `STRONGROOM_MASTER_KEY_FILE` names (empty when neither is set). A key in a file stays out
/// of the environment (which other processes of the same user, crash reports and `docker
/// inspect` can read) and survives the shell that made it; like an SSH key, the file is
/// refused when anyone but its owner could read it.
pub fn master_key_text() -> Result<zeroize::Zeroizing<String>, MasterKeyError> {
    let text = zeroize::Zeroizing::new(std::env::var("STRONGROOM_MASTER_KEY").unwrap_or_default());
    let Some(path) = key_file_named() else {
        return Ok(text);
    };
    if !text.trim().is_empty() {
        return Err(MasterKeyError::File(format!(
            "both STRONGROOM_MASTER_KEY and {KEY_FILE_VARIABLE} are set: keep one"
        )));
    }
    read_key_file(std::path::Path::new(&path))
}

/// The text of a key file that only its owner can read.
pub fn read_key_file(path: &std::path::Path) -> Result<zeroize::Zeroizing<String>, MasterKeyError> {
    let shown = path.display();
    let unreadable = |e: std::io::Error| {
        MasterKeyError::File(format!("cannot read the master key file {shown}: {e}"))
    };
    // A device, a pipe or a directory is no key file (and a pipe would block the open), nor
    // something to `chmod`: refused before anything is opened.
    let kind = std::fs::metadata(path).map_err(unreadable)?;
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(MasterKeyError::File(format!(
            "the master key file {shown} is {what}: name the file `strongroom keygen --out` wrote"
        )));
    }
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = file.metadata().map_err(unreadable)?.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(MasterKeyError::File(format!(
                "the master key file {shown} can be read or changed by other users (mode \
                 {mode:04o}): run `chmod 600 {shown}`"
            )));
        }
    }
    // Room for any key file up front, so that reading moves no copy of the key in memory
    // (a growing string leaves its old buffers behind, unwiped); more is no key file.
    const MOST: usize = 4096;
    let mut text = zeroize::Zeroizing::new(String::with_capacity(MOST));
    std::io::Read::read_to_string(
        &mut std::io::Read::take(&mut file, MOST as u64 - 1),
        &mut text,
    )
    .map_err(unreadable)?;
    if text.trim().is_empty() {
        return Err(MasterKeyError::File(format!(
            "the master key file {shown} is empty (write one with `strongroom keygen --out {shown}`)"
        )));
    }
    Ok(text)
}

/// The key file `STRONGROOM_MASTER_KEY_FILE` names, if it names one.
pub fn key_file_named() -> Option<std::ffi::OsString> {
    std::env::var_os(KEY_FILE_VARIABLE).filter(|p| !p.is_empty())
}

/// Writes a new file readable by its owner only (mode 0600), on disk before it returns; never
/// over an existing one. A write that fails halfway removes the file: half a key or half a
/// credentials file is worse than none.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let written = std::io::Write::write_all(&mut file, bytes).and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

/// A key's refusal, saying where the key came from when it was a file.
fn from_key_file(e: MasterKeyError) -> MasterKeyError {
    match key_file_named() {
        Some(path) => MasterKeyError::File(e.describe_as(&format!(
            "the master key in {}",
            std::path::Path::new(&path).display()
        ))),
        None => e,
    }
}

/// The master key held in the HSM that `spec` names.
pub fn hsm_master_key(spec: &str) -> Result<MasterKey, MasterKeyError> {
    let hsm = |e: crate::hsm::HsmError| MasterKeyError::Hsm(e.to_string());
    let spec: crate::hsm::Pkcs11Spec = spec.parse().map_err(hsm)?;
    crate::hsm::Pkcs11Kek::open(&spec)
        .and_then(crate::hsm::Pkcs11Kek::master_key)
        .map_err(hsm)
}

/// The production master key, when the environment has one.
pub fn optional_master_key() -> Result<Option<MasterKey>, MasterKeyError> {
    match master_key_from_env() {
        Ok(key) => Ok(Some(key)),
        Err(MasterKeyError::Missing) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A command's own audit chain, checkpointed (to the log, and to `checkpoint_file` when
/// given) when the master key is at hand.
pub async fn command_audit_trail(
    store: &Arc<dyn Store>,
    master: Option<&MasterKey>,
    checkpoint_file: Option<PathBuf>,
) -> Result<AuditTrail, CliError> {
    let anchor = match master {
        Some(master) => Some(Anchor::new(
            load_checkpoint_key(store.as_ref(), master, &SystemRandom::new(), &SystemClock).await?,
            checkpoint_file,
            Duration::ZERO,
        )),
        None => None,
    };
    Ok(AuditTrail::spawn(
        store.clone(),
        anchor,
        Arc::new(SystemClock),
        Metrics::new(),
    ))
}

/// The principal administration of a command, recorded in its own chain.
pub fn principal_admin(keys: Option<Arc<KeyService>>, audit: AuditTrail) -> PrincipalAdmin {
    PrincipalAdmin::new(
        keys,
        audit,
        Arc::new(SystemRandom::new()),
        Arc::new(SystemClock),
    )
}
