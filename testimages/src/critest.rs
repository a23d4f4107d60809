//! The images cri-tools' critest (v1.36.0) pulls, rebuilt offline from
//! busybox-static, for a loopback registry that hosts.toml files make the
//! mirror of registry.k8s.io, k8s.gcr.io, gcr.io and docker.io.
//!
//! What each holds follows cri-tools' `images/` directory and what the
//! specs check: the busybox test image (users `nobody`, `www-data`, …);
//! an "nginx" (a small static C program, `critest/nginx.c`) whose process
//! is named `nginx`, titled as nginx's master process, writes
//! `/var/run/nginx.pid` and answers HTTP 200 on port 80 (the host-network
//! variant on 12003); an "httpd" answering on 80; a setuid-root program
//! printing its effective uid (`critest/nonewprivs.c`); `pgrep` and `ipcs`
//! as shell scripts, which Debian's busybox-static lacks; the pause image under both registries;
//! distinct test images, one image under three tags, and images whose
//! config user is a uid, a name, with groups, or in a group of the image.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::json;

use crate::image::{busybox_layer_with, image_with_config, pause, Image, LayerBuilder};
use crate::registry::{push, Registry};

/// The registries whose images the loopback registry stands in for.
pub const MIRRORED_REGISTRIES: &[&str] = &["registry.k8s.io", "k8s.gcr.io", "gcr.io", "docker.io"];

/// critest images not built here, with why.
pub const NOT_BUILT: &[(&str, &str)] = &[(
    "gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2…",
    "pulled by its upstream digest, which an image rebuilt offline cannot have",
)];

/// One image as critest names it.
pub struct CritestImage {
    /// The upstream reference, e.g. `registry.k8s.io/pause:3.9`.
    pub name: &'static str,
    /// The image.
    pub image: Image,
}

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// busybox's own `/etc/passwd` and `/etc/group` (the users the specs run
/// as by name: `nobody`, `www-data`).
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
bin:x:2:2:bin:/bin:/bin/false\n\
sys:x:3:3:sys:/dev:/bin/false\n\
sync:x:4:100:sync:/bin:/bin/sync\n\
mail:x:8:8:mail:/var/spool/mail:/bin/false\n\
www-data:x:33:33:www-data:/var/www:/bin/false\n\
operator:x:37:37:Operator:/var:/bin/false\n\
nobody:x:65534:65534:nobody:/home:/bin/false\n";
const GROUP: &str = "root:x:0:\n\
daemon:x:1:\n\
bin:x:2:\n\
sys:x:3:\n\
adm:x:4:\n\
tty:x:5:\n\
disk:x:6:\n\
wheel:x:10:root\n\
mail:x:12:\n\
www-data:x:33:\n\
operator:x:37:\n\
users:x:100:\n\
nogroup:x:65533:\n\
nobody:x:65534:\n";

/// Shell stand-ins for tools Debian's busybox-static lacks.
const PGREP: &str = include_str!("critest/pgrep.sh");
const IPCS: &str = include_str!("critest/ipcs.sh");

/// The httpd image's command: a line naming httpd on stderr (the log the
/// multi-container spec looks for, as Apache's start-up notice), then
/// busybox httpd in the foreground.
const HTTPD_FOREGROUND: &str = "#!/bin/sh\n\
echo \"httpd: serving /usr/local/apache2/htdocs on port 80\" >&2\n\
exec httpd -f -p 80 -h /usr/local/apache2/htdocs\n";

/// C programs compiled static for the images, by file name.
const PROGRAMS: &[(&str, &str)] = &[
    ("nginx", include_str!("critest/nginx.c")),
    ("nonewprivs", include_str!("critest/nonewprivs.c")),
];

/// Compiles program `name` of [`PROGRAMS`] with `gcc -static`, once per
/// process.
fn program(name: &str) -> Result<Vec<u8>> {
    static BUILT: std::sync::OnceLock<
        std::result::Result<std::collections::BTreeMap<String, Vec<u8>>, String>,
    > = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let dir = crate::registry::TempDir::new("critest-programs").map_err(|e| e.to_string())?;
        let mut out = std::collections::BTreeMap::new();
        for (file, source) in PROGRAMS {
            let src = dir.path().join(format!("{file}.c"));
            let bin = dir.path().join(file);
            std::fs::write(&src, source).map_err(|e| e.to_string())?;
            let result = std::process::Command::new("gcc")
                .args(["-static", "-O2", "-o"])
                .arg(&bin)
                .arg(&src)
                .output()
                .map_err(|e| format!("run gcc ({e}): apt-get install gcc libc6-dev"))?;
            if !result.status.success() {
                return Err(format!(
                    "gcc -static {file}.c failed (apt-get install gcc libc6-dev): {}",
                    String::from_utf8_lossy(&result.stderr)
                ));
            }
            out.insert(
                (*file).to_owned(),
                std::fs::read(&bin).map_err(|e| e.to_string())?,
            );
        }
        Ok(out)
    });
    match built {
        Ok(programs) => programs
            .get(name)
            .cloned()
            .with_context(|| format!("no program {name}")),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

/// Where `cargo xtask deps` unpacks Debian's dynamically linked busybox
/// (package `busybox`, which conflicts with busybox-static and so is never
/// installed): `<cache>/busybox-dynamic/bin/busybox`.
pub const DYNAMIC_BUSYBOX: &str = "/var/cache/crated-ci/busybox-dynamic/bin/busybox";

/// The libraries the dynamic busybox needs, from this (Debian) host.
const DYNAMIC_LIBS: &[&str] = &[
    "lib64/ld-linux-x86-64.so.2",
    "lib/x86_64-linux-gnu/libc.so.6",
    "lib/x86_64-linux-gnu/libresolv.so.2",
];

/// critest's busybox: Debian's dynamic busybox, whose shell execs every
/// command (busybox-static runs applets in-process, so a masked
/// `/bin/ls` would never be exec'd and MaskedPaths could not fail as the
/// spec expects); its applets as hard links, so masking one leaves the
/// others; the libraries it links.
fn dynamic_busybox_layer(passwd: &str, group: &str) -> Result<Vec<u8>> {
    let binary = std::fs::read(DYNAMIC_BUSYBOX)
        .with_context(|| format!("read {DYNAMIC_BUSYBOX} (run `cargo xtask deps`)"))?;
    let list = std::process::Command::new(DYNAMIC_BUSYBOX)
        .arg("--list-full")
        .output()
        .context("run busybox --list-full")?;
    let mut layer = LayerBuilder::new();
    for dir in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "etc",
        "tmp",
        "lib",
        "lib64",
        "lib/x86_64-linux-gnu",
    ] {
        layer = layer.dir(dir)?;
    }
    for lib in DYNAMIC_LIBS {
        let data = std::fs::read(Path::new("/").join(lib))
            .with_context(|| format!("read /{lib} for the dynamic busybox"))?;
        layer = layer.file_mode(lib.as_bytes(), &data, 0o755)?;
    }
    layer = layer.file_mode(b"bin/busybox", &binary, 0o755)?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        layer = layer.link(tar::EntryType::Link, applet, b"bin/busybox")?;
    }
    layer
        .file("etc/passwd", passwd.as_bytes())?
        .file("etc/group", group.as_bytes())?
        .finish()
}

/// The busybox layer with `passwd` and `group` as given.
fn base(passwd: &str, group: &str) -> Result<Vec<u8>> {
    busybox_layer_with(passwd, group)
}

/// `pgrep` and `ipcs`, which the specs run in the busybox image.
fn tools() -> Result<Vec<u8>> {
    LayerBuilder::new()
        .file_mode(b"usr/bin/pgrep", PGREP.as_bytes(), 0o755)?
        .file_mode(b"usr/bin/ipcs", IPCS.as_bytes(), 0o755)?
        .finish()
}

fn image(layers: Vec<Vec<u8>>, config: serde_json::Value) -> Result<Image> {
    image_with_config("linux", crate::host_arch(), layers, config)
}

/// busybox with `Cmd` `sh` and `user` (empty: root).
fn busybox_as(user: &str, extra: Option<Vec<u8>>) -> Result<Image> {
    let mut layers = vec![base(PASSWD, GROUP)?, tools()?];
    layers.extend(extra);
    let mut config = json!({"Cmd": ["sh"], "Env": [PATH_ENV]});
    if !user.is_empty() {
        config["User"] = json!(user);
    }
    image(layers, config)
}

/// A test image told apart from the others by a file named `tag`, as
/// cri-tools' `image-test` adds one.
fn test_image(tag: &str) -> Result<Image> {
    let layer = LayerBuilder::new().file(tag, tag.as_bytes())?.finish()?;
    busybox_as("", Some(layer))
}

fn nginx(port: u16) -> Result<Image> {
    let layer = LayerBuilder::new()
        .file_mode(b"usr/sbin/nginx", &program("nginx")?, 0o755)?
        .dir("var")?
        .dir("var/run")?
        .finish()?;
    image(
        vec![base(PASSWD, GROUP)?, tools()?, layer],
        json!({
            "Cmd": ["nginx", "-g", "daemon off;"],
            "Env": [PATH_ENV, format!("NGINX_PORT={port}")],
            "ExposedPorts": {format!("{port}/tcp"): {}},
            "StopSignal": "SIGQUIT",
        }),
    )
}

fn httpd() -> Result<Image> {
    let layer = LayerBuilder::new()
        .dir("usr/local")?
        .dir("usr/local/bin")?
        .file_mode(
            b"usr/local/bin/httpd-foreground",
            HTTPD_FOREGROUND.as_bytes(),
            0o755,
        )?
        .dir("usr/local/apache2")?
        .dir("usr/local/apache2/htdocs")?
        .file(
            "usr/local/apache2/htdocs/index.html",
            b"<html><body><h1>It works!</h1></body></html>\n",
        )?
        .finish()?;
    image(
        vec![base(PASSWD, GROUP)?, tools()?, layer],
        json!({
            "Cmd": ["httpd-foreground"],
            "Env": [PATH_ENV],
            "ExposedPorts": {"80/tcp": {}},
        }),
    )
}

/// A setuid-root program printing its effective uid.
fn nonewprivs() -> Result<Image> {
    let layer = LayerBuilder::new()
        .dir("usr/local")?
        .dir("usr/local/bin")?
        .file_mode(b"usr/local/bin/nnp", &program("nonewprivs")?, 0o4755)?
        .finish()?;
    image(
        vec![base(PASSWD, GROUP)?, layer],
        json!({"Entrypoint": ["/usr/local/bin/nnp"], "Env": [PATH_ENV]}),
    )
}

/// Every image critest pulls, by upstream reference (one entry per
/// reference; images shared by several references are built once).
pub fn critest_images() -> Result<Vec<CritestImage>> {
    let pause = pause()?;
    let tags = test_image("test-image-tags")?;
    let arch_nginx: &'static str = match crate::host_arch() {
        "arm64" => "gcr.io/k8s-staging-cri-tools/hostnet-nginx-arm64:latest",
        _ => "gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest",
    };
    let predefined_passwd =
        format!("{PASSWD}default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n");
    let predefined_group =
        format!("{GROUP}default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n");
    let predefined = image(
        vec![base(&predefined_passwd, &predefined_group)?],
        json!({"Cmd": ["sh"], "Env": [PATH_ENV], "User": "1000"}),
    )?;
    Ok(vec![
        CritestImage {
            name: "registry.k8s.io/e2e-test-images/busybox:1.29-2",
            image: image(
                vec![dynamic_busybox_layer(PASSWD, GROUP)?, tools()?],
                json!({"Cmd": ["sh"], "Env": [PATH_ENV]}),
            )?,
        },
        CritestImage {
            name: "registry.k8s.io/e2e-test-images/nginx:1.14-2",
            image: nginx(80)?,
        },
        CritestImage {
            name: arch_nginx,
            image: nginx(12003)?,
        },
        CritestImage {
            name: "registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
            image: httpd()?,
        },
        CritestImage {
            name: "registry.k8s.io/e2e-test-images/nonewprivs:1.3",
            image: nonewprivs()?,
        },
        CritestImage {
            name: "registry.k8s.io/pause:3.9",
            image: pause.clone(),
        },
        CritestImage {
            name: "k8s.gcr.io/pause:3.9",
            image: pause,
        },
        CritestImage {
            name: "gcr.io/k8s-staging-cri-tools/test-image-latest:latest",
            image: test_image("test-image-latest")?,
        },
        CritestImage {
            name: "gcr.io/k8s-staging-cri-tools/test-image-tag:test",
            image: test_image("test-image-tag-test")?,
        },
        CritestImage {
            name: "gcr.io/k8s-staging-cri-tools/test-image-tag:all",
            image: test_image("test-image-tag-all")?,
        },
        CritestImage {
            name: "gcr.io/k8s-staging-cri-tools/test-image-1:latest",
            image: test_image("test-image-1")?,
        },
        CritestImage {
            name: "gcr.io/k8s-staging-cri-tools/test-image-2:latest",
            image: test_image("test-image-2")?,
        },
        CritestImage {
            name: "gcr.io/k8s-staging-cri-tools/test-image-3:latest",
            image: test_image("test-image-3")?,
        },
        CritestImage {
            name: "gcr.io/k8s-staging-cri-tools/test-image-tags:1",
            image: tags.clone(),
        },
        CritestImage {
            name: "gcr.io/k8s-staging-cri-tools/test-image-tags:2",
            image: tags.clone(),
        },
        CritestImage {
            name: "gcr.io/k8s-staging-cri-tools/test-image-tags:3",
            image: tags,
        },
        CritestImage {
            name: "gcr.io/k8s-staging-cri-tools/test-image-user-uid:latest",
            image: busybox_as("1002", None)?,
        },
        CritestImage {
            name: "gcr.io/k8s-staging-cri-tools/test-image-user-username:latest",
            image: busybox_as("www-data", None)?,
        },
        CritestImage {
            name: "gcr.io/k8s-staging-cri-tools/test-image-user-uid-group:latest",
            image: busybox_as("1003:1004", None)?,
        },
        CritestImage {
            name: "gcr.io/k8s-staging-cri-tools/test-image-user-username-group:latest",
            image: busybox_as("www-data:1004", None)?,
        },
        CritestImage {
            name: "gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest",
            image: predefined,
        },
    ])
}

/// `registry.k8s.io/e2e-test-images/busybox:1.29-2` → the path and tag it
/// has on the mirror, `e2e-test-images/busybox:1.29-2`.
fn mirror_path(name: &str) -> Result<&str> {
    MIRRORED_REGISTRIES
        .iter()
        .find_map(|r| name.strip_prefix(r).and_then(|rest| rest.strip_prefix('/')))
        .with_context(|| format!("{name} is not on a mirrored registry"))
}

/// Pushes every critest image to `registry` under its upstream path and
/// tag. The registries share one mirror, so two references may only meet
/// on one path if they are the same image.
pub async fn push_critest_images(registry: &Registry) -> Result<()> {
    let images = critest_images()?;
    let mut seen: std::collections::BTreeMap<&str, &Image> = std::collections::BTreeMap::new();
    for entry in &images {
        let path = mirror_path(entry.name)?;
        if let Some(other) = seen.insert(path, &entry.image) {
            anyhow::ensure!(
                other.root.digest == entry.image.root.digest,
                "{path} would hold two different images on the mirror"
            );
            continue;
        }
        push(&format!("{}/{path}", registry.host), &entry.image)
            .await
            .with_context(|| format!("push {}", entry.name))?;
    }
    Ok(())
}

/// Writes `<dir>/<registry>/hosts.toml` for each mirrored registry,
/// sending pulls (and resolves) to the plain-HTTP registry at `loopback`
/// (`127.0.0.1:<port>`) and nowhere else.
pub fn write_mirror_hosts(dir: &Path, loopback: &str) -> Result<()> {
    for registry in MIRRORED_REGISTRIES {
        let host_dir = dir.join(registry);
        std::fs::create_dir_all(&host_dir)
            .with_context(|| format!("create {}", host_dir.display()))?;
        let text = format!(
            "server = \"http://{loopback}\"\n\n[host.\"http://{loopback}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        let file = host_dir.join("hosts.toml");
        std::fs::write(&file, text).with_context(|| format!("write {}", file.display()))?;
    }
    Ok(())
}
