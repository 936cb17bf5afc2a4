//! The master key in an HSM: a non-extractable AES-256 key in a SoftHSM2 token (Debian's
//! `softhsm2`, installed by `.ci/run`; without it these tests fail, loudly), through PKCS#11.
//! Every step runs the real binary against a real PostgreSQL database.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::cli::{run, strongroom};
use crate::helpers::*;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "246810";

/// A SoftHSM2 token of its own, in a directory removed afterwards.
struct Token {
    dir: PathBuf,
    label: String,
}

impl Drop for Token {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Token {
    fn new() -> Token {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("strongroom-softhsm-{id}"));
        std::fs::create_dir_all(dir.join("tokens")).unwrap();
        std::fs::write(
            dir.join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("tokens").display()
            ),
        )
        .unwrap();
        let label = format!("t{}", &id[..8]);
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", &label, "--pin", PIN, "--so-pin", "13579"])
            .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
            .output()
            .unwrap_or_else(|e| {
                panic!("softhsm2-util ({e}): the HSM tests need Debian's softhsm2 (.ci/run installs it)")
            });
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Token { dir, label }
    }

    fn spec(&self, key: &str) -> String {
        format!("module={MODULE};token={};label={key}", self.label)
    }

    /// `strongroom` with this token's configuration and PIN.
    fn command(&self) -> Command {
        let mut command = strongroom();
        command
            .env("SOFTHSM2_CONF", self.dir.join("softhsm2.conf"))
            .env("STRONGROOM_PKCS11_PIN", PIN);
        command
    }
}

/// A `strongroom serve` process, killed on drop.
struct Serving {
    child: Child,
    address: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `url` with `command` (which carries the key); `None` when it refuses to start.
fn serve(
    mut command: Command,
    url: &str,
    policy_file: &std::path::Path,
) -> Result<Serving, String> {
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--policy-file"])
        .arg(policy_file)
        .env("DATABASE_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.map_while(Result::ok) {
        let entry: Value = serde_json::from_str(&line).unwrap_or_default();
        if entry["message"] == "strongroom serving" {
            let address = format!("http://{}", entry["listen"].as_str().unwrap());
            return Ok(Serving { child, address });
        }
    }
    let out = child.wait_with_output().unwrap();
    Err(String::from_utf8_lossy(&out.stderr).into_owned())
}

fn create_principal(command: &mut Command, url: &str, name: &str, role: &str) -> String {
    let (ok, out, err) = run(command
        .args([
            "principal",
            "create",
            "--tenant",
            "acme",
            "--name",
            name,
            "--role",
            role,
            "--json",
        ])
        .env("DATABASE_URL", url));
    assert!(ok, "{err}");
    serde_json::from_str::<Value>(&out).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Tokenizes `pan` (or finds its token) and reads it back through a fresh grant.
async fn round_trip(base: &str, tokenizer: &str, payments: &str, pan: &str) -> String {
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/v1/tokens"))
        .bearer_auth(tokenizer)
        .json(&json!({"value": pan}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(detokenize_at(base, payments, &token).await, pan);
    token
}

#[tokio::test]
async fn a_vault_keyed_in_softhsm_serves_restarts_reads_back_rewraps_both_ways_and_never_lets_the_key_out()
 {
    let token = Token::new();
    let db = TestDb::create(true).await;
    let policy_file = write_policy_file(TEST_POLICIES);
    let first = token.spec("master");

    // The key is made inside the token, non-extractable; the same label twice is refused.
    let (ok, out, err) = run(token.command().args(["keygen", "--pkcs11", &first]));
    assert!(ok, "{err}");
    assert!(out.contains("non-extractable"), "{out}");
    let (ok, _, err) = run(token.command().args(["keygen", "--pkcs11", &first]));
    assert!(!ok && err.contains("already has a key"), "{err}");
    // A wrong PIN is refused, naming the token and not the PIN.
    let (ok, _, err) = run(token
        .command()
        .env("STRONGROOM_PKCS11_PIN", "000000")
        .args(["keygen", "--pkcs11", &token.spec("other")]));
    assert!(
        !ok && err.contains("cannot log in") && !err.contains("000000"),
        "{err}"
    );

    let with_hsm = |spec: &str| {
        let mut command = token.command();
        command.env("STRONGROOM_MASTER_KEY_PKCS11", spec);
        command
    };
    let tokenizer = create_principal(&mut with_hsm(&first), &db.url, "checkout", "tokenizer");
    let payments = create_principal(&mut with_hsm(&first), &db.url, "payments", "detokenizer");
    let auditor = create_principal(&mut with_hsm(&first), &db.url, "compliance", "auditor");

    // Serve, tokenize and read back; restart and read back again.
    let pan = random_pan("4", 16);
    let server = serve(with_hsm(&first), &db.url, &policy_file).unwrap();
    let issued = round_trip(&server.address, &tokenizer, &payments, &pan).await;
    drop(server);
    let server = serve(with_hsm(&first), &db.url, &policy_file).unwrap();
    assert_eq!(
        round_trip(&server.address, &tokenizer, &payments, &pan).await,
        issued
    );
    drop(server);

    // The device says the key cannot leave it; it opens every stored key.
    let (ok, out, err) = run(with_hsm(&first)
        .args(["keys", "status", "--json"])
        .env("DATABASE_URL", &db.url));
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        status["master_key"]["source"], "pkcs11 (STRONGROOM_MASTER_KEY_PKCS11)",
        "{status}"
    );
    assert_eq!(status["master_key"]["extractable"], false);
    assert_eq!(status["master_key"]["opens_stored_keys"], true);

    // HSM → environment key: the HSM key opens nothing afterwards, the new key everything.
    let env_key = new_master_key();
    let (ok, _, err) = run(with_hsm(&first)
        .args(["keys", "rewrap"])
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_NEW_MASTER_KEY", &env_key));
    assert!(ok, "{err}");
    let refused = serve(with_hsm(&first), &db.url, &policy_file)
        .err()
        .unwrap();
    assert!(refused.contains("does not match"), "{refused}");
    let mut env_serve = strongroom();
    env_serve.env("STRONGROOM_MASTER_KEY", &env_key);
    let server = serve(env_serve, &db.url, &policy_file).unwrap();
    assert_eq!(
        round_trip(&server.address, &tokenizer, &payments, &pan).await,
        issued
    );
    drop(server);

    // Environment key → a new HSM key.
    let second = token.spec("master-2");
    let (ok, _, err) = run(token.command().args(["keygen", "--pkcs11", &second]));
    assert!(ok, "{err}");
    let (ok, _, err) = run(token
        .command()
        .args(["keys", "rewrap"])
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY", &env_key)
        .env("STRONGROOM_NEW_MASTER_KEY_PKCS11", &second));
    assert!(ok, "{err}");
    let server = serve(with_hsm(&second), &db.url, &policy_file).unwrap();
    assert_eq!(
        round_trip(&server.address, &tokenizer, &payments, &pan).await,
        issued
    );
    // Both moves are in the trail, with the kinds of key on either side.
    let details = system_details(&server.address, &auditor, "key.rewrap").await;
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(
        details[0].contains("from_kind=environment to_kind=pkcs11"),
        "{details:?}"
    );
    assert!(
        details[1].contains("from_kind=pkcs11 to_kind=environment"),
        "{details:?}"
    );
    drop(server);

    // Both a key and an HSM key: refused as ambiguous.
    let mut both = with_hsm(&second);
    both.env("STRONGROOM_MASTER_KEY", &env_key);
    let refused = serve(both, &db.url, &policy_file).err().unwrap();
    assert!(refused.contains("keep one"), "{refused}");
    let _ = std::fs::remove_file(policy_file);
}
