//! `edgepool auth init DIR`: the credentials of a secure deployment in one step. A CA and a
//! server certificate for the NATS service names, one NATS user per role and per camera with a
//! random password, the server's authorization config with only the passwords' bcrypt hashes,
//! and a token for the sink's HTTP. docs/security.md, "Credentials in one step".

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use edgepool_wire::CameraId;

#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {
    /// Create DIR with a CA, a NATS server certificate, a user and password per role (admin,
    /// setup, worker, sink, subscriber, cameras, gateway) and per camera, the server's auth.conf (bcrypt
    /// hashes only) and a token for the sink's page. Every file is mode 0600. An existing DIR is never
    /// overwritten without --force.
    Init(InitArgs),
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to write the files (created, mode 0700).
    pub dir: PathBuf,
    /// A camera that gets its own NATS user, allowed to publish frames.<ID> only (repeatable,
    /// or comma separated).
    #[arg(long = "camera", value_name = "ID", value_delimiter = ',')]
    pub cameras: Vec<String>,
    /// Another name or IP address the server certificate must carry, e.g. the LoadBalancer's
    /// address that cameras outside the cluster connect to (repeatable). The Kubernetes
    /// service names, localhost and 127.0.0.1 are always in it.
    #[arg(long = "san", value_name = "NAME|IP")]
    pub sans: Vec<String>,
    /// The Kubernetes namespace the service names are in.
    #[arg(long, default_value = "edgepool")]
    pub namespace: String,
    /// Validity of the server certificate, in days (the CA's is ten years).
    #[arg(long, default_value_t = 397)]
    pub days: u32,
    /// Replace the files of an existing DIR.
    #[arg(long)]
    pub force: bool,
}

/// The roles of `nats/auth.conf`, each a user of that name.
pub const ROLES: [&str; 7] = ["admin", "setup", "worker", "sink", "subscriber", "cameras", "gateway"];

/// bcrypt's cost for the stored hashes: nats-server checks one per connection.
const BCRYPT_COST: u32 = 11;

/// The template: `nats/auth.conf`, the single source of every role's permissions.
const AUTH_TEMPLATE: &str = include_str!("../../../../nats/auth.conf");
/// Where the template's example cameras start; they are replaced by the cameras given.
const CAMERAS_MARKER: &str = "    # --- cameras: one user per camera id";

pub fn run(cmd: AuthCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuthCommand::Init(args) => init(&args),
    }
}

fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let cameras = args
        .cameras
        .iter()
        .map(|c| CameraId::new(c.clone()).with_context(|| format!("--camera {c}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(role) = cameras.iter().find(|c| ROLES.contains(&c.as_str())) {
        anyhow::bail!("--camera {role}: that name is a role's user; name the camera differently");
    }
    prepare_dir(&args.dir, args.force)?;
    let mut files = Vec::new();
    let mut write = |name: &str, text: &str| -> anyhow::Result<()> {
        write_private(&args.dir.join(name), text.as_bytes())?;
        files.push(name.to_owned());
        Ok(())
    };

    let pki = pki(&args.namespace, &args.sans, args.days)?;
    write("ca.crt", &pki.ca_cert)?;
    write("ca.key", &pki.ca_key)?;
    write("nats-server.crt", &pki.server_cert)?;
    write("nats-server.key", &pki.server_key)?;

    let mut hashes = Vec::new();
    let users = ROLES
        .iter()
        .map(|r| ((*r).to_owned(), format!("{r}.env")))
        .chain(cameras.iter().map(|c| (c.to_string(), format!("camera-{c}.env"))));
    for (user, file) in users.collect::<Vec<_>>() {
        let password = random_token()?;
        // `$2a$`: every nats-server version recognizes that prefix as a bcrypt hash (older ones
        // only that one).
        let hash = bcrypt::hash_with_result(&password, BCRYPT_COST)
            .context("hashing a password")?
            .format_for_version(bcrypt::Version::TwoA);
        write(&file, &client_env(&user, &password))?;
        hashes.push((user, hash));
    }
    write("auth.conf", &auth_conf(&hashes, &cameras)?)?;
    // The page, feed and camera endpoints take one token; /metrics another, which Prometheus
    // holds (a scrape credential is not a viewer's).
    let sink_http =
        format!("EDGEPOOL_SINK_TOKEN={}\nEDGEPOOL_SINK_METRICS_TOKEN={}\n", random_token()?, random_token()?);
    write("sink-http.env", &sink_http)?;
    // The gateway's API key (DeepStack's `api_key` field; what Frigate, Blue Iris and Home
    // Assistant are configured with) and its /metrics token.
    let gateway_http =
        format!("EDGEPOOL_GATEWAY_API_KEY={}\nEDGEPOOL_GATEWAY_METRICS_TOKEN={}\n", random_token()?, random_token()?);
    write("gateway-http.env", &gateway_http)?;

    println!("wrote {} (mode 0700), every file mode 0600:", args.dir.display());
    for f in &files {
        println!("  {f}");
    }
    println!(
        "\nauth.conf holds only bcrypt hashes: give it, nats-server.crt and nats-server.key to the server; \
         each <role>.env and camera-<id>.env with ca.crt to that client only.\n\
         Keep ca.key offline: it signs the next server certificate (docs/security.md, \"Rotation\")."
    );
    Ok(ExitCode::SUCCESS)
}

/// The client's environment: its user, password and inbox prefix (`nats/auth.conf` grants each
/// user `_INBOX_<user>.>` only).
fn client_env(user: &str, password: &str) -> String {
    format!(
        "# NATS credentials of `{user}` (edgepool auth init). Keep this file private.\n\
         EDGEPOOL_NATS_USER={user}\nEDGEPOOL_NATS_PASSWORD={password}\nEDGEPOOL_NATS_INBOX_PREFIX=_INBOX_{user}\n"
    )
}

/// `nats/auth.conf` with each role's password variable replaced by its bcrypt hash, and the
/// example cameras replaced by one user per camera.
pub fn auth_conf(hashes: &[(String, String)], cameras: &[CameraId]) -> anyhow::Result<String> {
    let start = AUTH_TEMPLATE.find(CAMERAS_MARKER).context("nats/auth.conf has no cameras section")?;
    let end = AUTH_TEMPLATE.rfind("  ]\n}").context("nats/auth.conf does not end its users list")?;
    let hash_of = |user: &str| hashes.iter().find(|(u, _)| u == user).map(|(_, h)| h.as_str());
    let mut out = String::from(
        "# Generated by `edgepool auth init` from nats/auth.conf: the same users and permissions,\n\
         # with bcrypt hashes of the passwords instead of variables, and one user per camera.\n\n",
    );
    for role in ROLES {
        let variable = format!("password: $EDGEPOOL_NATS_{}_PASSWORD", role.to_ascii_uppercase());
        anyhow::ensure!(AUTH_TEMPLATE[..start].contains(&variable), "nats/auth.conf has no {variable}");
    }
    // The template's own header explains its variables; the generated file has none.
    let body = AUTH_TEMPLATE.find("authorization {").context("nats/auth.conf has no authorization block")?;
    let mut head = AUTH_TEMPLATE[body..start].to_owned();
    for role in ROLES {
        let variable = format!("password: $EDGEPOOL_NATS_{}_PASSWORD", role.to_ascii_uppercase());
        let hash = hash_of(role).with_context(|| format!("no password for {role}"))?;
        head = head.replace(&variable, &format!("password: \"{hash}\""));
    }
    out.push_str(&head);
    out.push_str("    # --- cameras: one user per camera, allowed to publish only its own frames subject and to\n");
    out.push_str("    # receive its publish acks on its own inbox prefix.\n");
    for camera in cameras {
        let hash = hash_of(camera.as_str()).with_context(|| format!("no password for camera {camera}"))?;
        let _ = writeln!(out, "    {{\n      user: \"{camera}\"\n      password: \"{hash}\"\n      permissions: {{");
        let _ = writeln!(out, "        publish: {{ allow: [\"frames.{camera}\"] }}");
        let _ = writeln!(out, "        subscribe: {{ allow: [\"_INBOX_{camera}.>\"] }}\n      }}\n    }}");
    }
    out.push_str(&AUTH_TEMPLATE[end..]);
    anyhow::ensure!(!out.contains("$EDGEPOOL_"), "nats/auth.conf has a password variable that is not a role's");
    Ok(out)
}

/// PEM of the CA and the server's certificate and keys.
struct Pki {
    ca_cert: String,
    ca_key: String,
    server_cert: String,
    server_key: String,
}

/// The server certificate's names: the Kubernetes services (`nats`, and each pod of the
/// StatefulSet behind `nats-headless` for the cluster routes), localhost, and `extra`.
pub fn server_names(namespace: &str, extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    for service in ["nats", "nats-headless"] {
        names.push(service.to_owned());
        for suffix in ["", ".svc", ".svc.cluster.local"] {
            names.push(format!("{service}.{namespace}{suffix}"));
        }
    }
    names.push(format!("*.nats-headless.{namespace}.svc.cluster.local"));
    names.push(format!("*.nats-headless.{namespace}.svc"));
    names.push("*.nats-headless".to_owned());
    names.extend(extra.iter().cloned());
    names.dedup();
    names
}

fn pki(namespace: &str, extra: &[String], days: u32) -> anyhow::Result<Pki> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
    let now = time::OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate().context("a CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca.distinguished_name.push(DnType::CommonName, "edgepool CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = now - time::Duration::hours(1);
    ca.not_after = now + time::Duration::days(3650);
    let ca_cert = ca.self_signed(&ca_key).context("signing the CA")?;

    let server_key = KeyPair::generate().context("a server key")?;
    let mut server = CertificateParams::new(server_names(namespace, extra)).context("server certificate names")?;
    server.distinguished_name.push(DnType::CommonName, "nats");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    // Client auth too: the cluster routes between NATS pods use this certificate both ways.
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    server.not_before = now - time::Duration::hours(1);
    server.not_after = now + time::Duration::days(i64::from(days));
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key).context("signing the server certificate")?;
    Ok(Pki {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
    })
}

/// 32 random bytes as 43 URL-safe characters (no padding): passwords and tokens.
fn random_token() -> anyhow::Result<String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("the system's random source failed: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Creates `dir` (mode 0700), or checks that an existing one may be written.
fn prepare_dir(dir: &Path, force: bool) -> anyhow::Result<()> {
    if dir.exists() {
        let has_files = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.next().is_some();
        anyhow::ensure!(
            !has_files || force,
            "{} exists and is not empty: its credentials may be in use. Pick another directory, or pass --force to \
             replace them (every client then needs its new file)",
            dir.display()
        );
    } else {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", dir.display()))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` with mode 0600 from the start (never world-readable, not even for a
/// moment), replacing an existing file.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_auth_conf_has_hashes_and_one_user_per_camera() {
        let hashes: Vec<(String, String)> = ROLES
            .iter()
            .map(|r| ((*r).to_owned(), format!("$2a$11$hash-of-{r}")))
            .chain([("front-door".to_owned(), "$2a$11$hash-of-door".to_owned())])
            .collect();
        let conf = auth_conf(&hashes, &[CameraId::new("front-door").unwrap()]).unwrap();
        assert!(!conf.contains("$EDGEPOOL_NATS"), "no variable left, not even in a comment:\n{conf}");
        assert!(!conf.contains("cam-1") && !conf.contains("cam-2"), "the template's example cameras are gone");
        assert!(conf.contains("password: \"$2a$11$hash-of-worker\""));
        assert!(conf.contains("publish: { allow: [\"frames.front-door\"] }"));
        assert!(conf.contains("subscribe: { allow: [\"_INBOX_front-door.>\"] }"));
        assert!(conf.trim_end().ends_with("]\n}"), "{conf}");
        // The roles' permissions are the template's, byte for byte.
        let worker = |s: &str| s[s.find("user: worker").unwrap()..s.find("user: sink").unwrap()].to_owned();
        assert_eq!(
            worker(&conf).replace("\"$2a$11$hash-of-worker\"", "$EDGEPOOL_NATS_WORKER_PASSWORD"),
            worker(AUTH_TEMPLATE)
        );
    }

    #[test]
    fn the_server_certificate_names_the_services_and_the_routes() {
        let names = server_names("edgepool", &["nats.example.lan".into()]);
        for n in [
            "nats",
            "nats.edgepool.svc.cluster.local",
            "*.nats-headless.edgepool.svc.cluster.local",
            "127.0.0.1",
            "nats.example.lan",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
    }

    #[test]
    fn an_existing_directory_is_not_overwritten_without_force() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("worker.env"), "in use").unwrap();
        let err = prepare_dir(dir.path(), false).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        prepare_dir(dir.path(), true).unwrap();
        write_private(&dir.path().join("worker.env"), b"new").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("worker.env")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn tokens_are_long_and_different() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }
}
