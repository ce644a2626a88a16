//! Loading, merging, validating and printing back the settings.

use std::time::Duration;

use mcp_provider_core::bridge::Share;
use mcp_provider_core::telemetry::otlp::Format;
use mcp_provider_core::telemetry::Sampler;

use super::sources::Added;
use super::{BadSettings, Settings};
fn load(env: &[(&str, &str)], sets: &[&str]) -> Result<Settings, BadSettings> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Settings::load(None, env, &sets, &Added::default())
}

#[test]
fn a_table_key_is_set_with_a_dotted_name() {
    let s = load(
        &[("MCP_PROVIDER_BRIDGE_SESSION_IDLE_SECS", "60")],
        &["bridge.max_sessions=5000"],
    )
    .unwrap();
    assert_eq!(s.bridge.limits().max_sessions, 5000);
    assert_eq!(s.bridge.limits().session_idle, Duration::from_secs(60));
    assert!(s.bridge.servers.is_empty());
    let zero = load(&[], &["bridge.max_sessions=0"]).unwrap_err().0;
    assert!(zero.contains("bridge.max_sessions"), "{zero}");
    let s = load(
        &[("MCP_PROVIDER_BRIDGE_PING_TIMEOUT_SECS", "3")],
        &["bridge.startup_timeout_secs=120"],
    )
    .unwrap();
    assert_eq!(s.bridge.limits().startup_timeout, Duration::from_secs(120));
    assert_eq!(s.bridge.limits().ping_timeout, Duration::from_secs(3));
    let zero = load(&[], &["bridge.ping_timeout_secs=0"]).unwrap_err().0;
    assert!(zero.contains("bridge.ping_timeout_secs"), "{zero}");
    let unknown = load(&[], &["bridge.nope=1"]).unwrap_err().0;
    assert!(
        unknown.contains("--set bridge.nope") && unknown.contains("nope"),
        "{unknown}"
    );
}

#[test]
fn env_then_flags_override_defaults() {
    let s = load(
        &[
            ("MCP_PROVIDER_API_KEY", "a,b"),
            ("MCP_PROVIDER_REQUESTS_PER_MINUTE", "5"),
            ("HOME", "/x"),
            ("MCP_PROVIDER_URL", "ws://127.0.0.1:9/v1/agent"),
        ],
        &["requests_per_minute=7", "listen=127.0.0.1:0"],
    )
    .unwrap();
    assert_eq!(s.api_key, ["a", "b"]);
    assert_eq!(s.requests_per_minute, 7);
    assert_eq!(s.listen, ["127.0.0.1:0"]);
    assert!(s.echo_agent);
}

#[test]
fn bad_keys_and_values_name_the_key() {
    assert!(load(&[("MCP_PROVIDER_NOPE", "1")], &[])
        .unwrap_err()
        .0
        .contains("nope"));
    assert!(load(&[], &["max_tokens=lots"])
        .unwrap_err()
        .0
        .contains("max_tokens"));
    assert!(load(&[], &["listen=here"])
        .unwrap_err()
        .0
        .contains("listen"));
    let flag = load(&[], &["max_tokens=abc"]).unwrap_err().0;
    assert!(
        flag.starts_with("--set max_tokens=…: invalid type"),
        "{flag}"
    );
    let var = load(&[("MCP_PROVIDER_MAX_TOKENS", "abc")], &[])
        .unwrap_err()
        .0;
    assert!(
        var.starts_with("environment variable MCP_PROVIDER_MAX_TOKENS: invalid type"),
        "{var}"
    );
    assert!(!var.contains("line"), "{var}");
}

#[test]
fn printed_config_reads_back_as_the_same_settings_without_secrets() {
    let s = load(
        &[
            ("MCP_PROVIDER_API_KEY", "sk-secret-1"),
            ("MCP_PROVIDER_BRIDGE_TOKEN", "bt-secret"),
        ],
        &[
            "echo_chunk_delay_ms=5",
            "requests_per_minute=9",
            "cors_origins=http://a.test",
        ],
    )
    .unwrap();
    let printed = s.masked(77);
    assert!(
        !printed.contains("sk-secret") && !printed.contains("bt-secret"),
        "{printed}"
    );
    assert!(printed.contains("echo_chunk_delay_ms = 5"), "{printed}");
    assert!(printed.contains("# api_key: set (hidden)"), "{printed}");
    let dir = std::env::temp_dir().join(format!("settings-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("printed.toml");
    std::fs::write(&file, &printed).unwrap();
    let back = Settings::load(Some(&file), std::iter::empty(), &[], &Added::default()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let expected = Settings {
        api_key: Vec::new(),
        bridge_token: None,
        max_connections: Some(77),
        ..s
    };
    assert_eq!(back, expected);
}

fn with_servers(flags: &[String]) -> Added {
    Added {
        servers: flags.to_vec(),
        ..Added::default()
    }
}

#[test]
fn servers_come_from_flags_split_like_a_shell_and_print_back() {
    let flags = [
        r#"files=npx -y "@scope/server files" '/tmp/a b'"#.to_owned(),
        "git=uvx mcp-server-git".to_owned(),
    ];
    let s = Settings::load(None, std::iter::empty(), &[], &with_servers(&flags)).unwrap();
    let [files, git] = &s.bridge.servers[..] else {
        panic!("{:?}", s.bridge.servers)
    };
    assert_eq!(files.name, "files");
    assert_eq!(files.command, "npx");
    assert_eq!(files.args, ["-y", "@scope/server files", "/tmp/a b"]);
    assert_eq!(git.spec().command, ["uvx", "mcp-server-git"]);
    assert_eq!(git.spec().share, Share::Shared);

    let printed = s.masked(7);
    assert!(printed.contains("[[bridge.servers]]"), "{printed}");
    let dir = std::env::temp_dir().join(format!("bridge-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("printed.toml");
    std::fs::write(&file, &printed).unwrap();
    let back = Settings::load(Some(&file), std::iter::empty(), &[], &Added::default()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(back.bridge, s.bridge);
}

#[test]
fn bad_servers_are_named() {
    let load = |flags: &[&str]| {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        Settings::load(None, std::iter::empty(), &[], &with_servers(&flags))
            .unwrap_err()
            .0
    };
    assert!(load(&["nocommand"]).contains("NAME=COMMAND"));
    assert!(load(&["x=echo 'open"]).contains("quotes"));
    assert!(load(&["a/b=cat"]).contains("`a/b`"));
    assert!(load(&["x=cat", "x=cat"]).contains("two servers"));
    let dir = std::env::temp_dir().join(format!("bridge-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    let error = |entry: &str| {
        std::fs::write(&file, format!("[[bridge.servers]]\n{entry}")).unwrap();
        Settings::load(Some(&file), std::iter::empty(), &[], &Added::default())
            .unwrap_err()
            .0
    };
    let share = error("name = \"x\"\ncommand = \"cat\"\nshare = \"sometimes\"\n");
    let resources = error("name = \"x\"\ncommand = \"cat\"\nresources = [\"\"]\n");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(share.contains("share"), "{share}");
    assert!(resources.contains("`resources`"), "{resources}");
}

#[test]
fn a_prefix_and_the_longest_name_are_read_checked_and_reach_the_core() {
    let dir = std::env::temp_dir().join(format!("bridge-prefix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("prefix.toml");
    let load = |text: &str, env: &[(&str, &str)]| {
        std::fs::write(&file, text).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Settings::load(Some(&file), env, &[], &Added::default())
    };
    let two = "[[bridge.servers]]\nname = \"github\"\ncommand = \"x\"\nprefix = \"gh\"\n\
               [[bridge.servers]]\nname = \"files\"\ncommand = \"y\"\nprefix = \"\"\n";
    let s = load(two, &[("MCP_PROVIDER_BRIDGE_MAX_NAME_LEN", "60")]).unwrap();
    assert_eq!(s.bridge.servers[0].spec().prefix.as_deref(), Some("gh"));
    assert_eq!(s.bridge.servers[1].spec().prefix.as_deref(), Some(""));
    assert_eq!(s.bridge.names().max_len(), 60);
    assert_eq!(load("", &[]).unwrap().bridge.names().max_len(), 64);
    let printed = s.masked(7);
    assert!(
        printed.contains("prefix = \"gh\"") && printed.contains("max_name_len = 60"),
        "{printed}"
    );
    let short = load("", &[("MCP_PROVIDER_BRIDGE_MAX_NAME_LEN", "8")])
        .unwrap_err()
        .0;
    assert!(short.contains("bridge.max_name_len"), "{short}");
    let bad = load(
        "[[bridge.servers]]\nname = \"x\"\ncommand = \"c\"\nprefix = \"a b\"\n",
        &[],
    );
    assert!(bad.unwrap_err().0.contains("`prefix`"));
    // A prefix another server is named under already.
    let taken = "[[bridge.servers]]\nname = \"gh\"\ncommand = \"x\"\n\
                 [[bridge.servers]]\nname = \"github\"\ncommand = \"y\"\nprefix = \"gh\"\n";
    let taken = load(taken, &[]).unwrap_err().0;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        taken.contains("`github`") && taken.contains("`gh`"),
        "{taken}"
    );
}

#[test]
fn no_endpoint_exports_nothing_and_the_otel_variables_configure_the_exporter() {
    assert!(load(&[], &[])
        .unwrap()
        .telemetry
        .export()
        .unwrap()
        .is_none());
    let s = load(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:6006/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%2Cb,x-team=blue"),
            ("OTEL_SERVICE_NAME", "gateway"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64"),
        ],
        &[],
    )
    .unwrap();
    let export = s.telemetry.export().unwrap().unwrap();
    assert_eq!(export.url.to_string(), "http://127.0.0.1:6006/v1/traces");
    assert_eq!(export.format, Format::Json);
    assert_eq!(
        export.headers,
        [
            ("api-key".to_owned(), "a,b".to_owned()),
            ("x-team".to_owned(), "blue".to_owned())
        ]
    );
    assert_eq!(export.resource.service_name, "gateway");
    assert_eq!(export.sampler, Sampler::Ratio(0.25));
    assert_eq!(export.timeout, Duration::from_millis(2500));
    assert_eq!(export.schedule_delay, Duration::from_millis(100));
    assert_eq!((export.max_batch, export.max_queue), (64, 2048));
    // The defaults.
    let s = load(
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example")],
        &[],
    )
    .unwrap();
    let export = s.telemetry.export().unwrap().unwrap();
    assert_eq!(export.url.to_string(), "https://otel.example/v1/traces");
    assert_eq!(export.format, Format::Protobuf);
    assert_eq!(export.resource.service_name, "mcp-provider");
    assert_eq!(export.sampler, Sampler::default());
    assert_eq!(export.timeout, Duration::from_secs(10));
}

#[test]
fn the_traces_endpoint_is_used_as_it_is() {
    let s = load(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://b:4318/custom/path",
            ),
        ],
        &[],
    )
    .unwrap();
    let url = s.telemetry.export().unwrap().unwrap().url;
    assert_eq!(url.to_string(), "http://b:4318/custom/path");
}

#[test]
fn the_telemetry_table_yields_to_the_environment_and_flags_to_both() {
    let dir = std::env::temp_dir().join(format!("telemetry-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(
        &file,
        "[telemetry]\nendpoint = \"http://file:4318\"\nservice_name = \"from-file\"\n\
         protocol = \"http/json\"\nheaders = { authorization = \"Bearer t0ken\" }\n",
    )
    .unwrap();
    let env = [("OTEL_SERVICE_NAME", "from-env")];
    let loaded = Settings::load(
        Some(&file),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        &["telemetry.endpoint=http://flag:4318".to_owned()],
        &Added::default(),
    )
    .unwrap();
    let export = loaded.telemetry.export().unwrap().unwrap();
    assert_eq!(export.resource.service_name, "from-env");
    assert_eq!(export.url.to_string(), "http://flag:4318/v1/traces");
    assert_eq!(export.format, Format::Json);
    assert_eq!(
        export.headers,
        [("authorization".to_owned(), "Bearer t0ken".to_owned())]
    );
    // Printed back, the header's value is hidden.
    let shown = loaded.masked(100);
    assert!(
        shown.contains("telemetry.headers: authorization set") && !shown.contains("t0ken"),
        "{shown}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // MCP_PROVIDER_TELEMETRY_* names the table's keys too.
    let s = load(&[("MCP_PROVIDER_TELEMETRY_ENDPOINT", "http://m:1")], &[]).unwrap();
    assert!(s.telemetry.export().unwrap().is_some());
}

#[test]
fn otel_sdk_disabled_turns_exporting_off() {
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
    for (value, off) in [
        ("true", true),
        ("TRUE", true),
        ("false", false),
        ("1", false),
    ] {
        let s = load(&[endpoint, ("OTEL_SDK_DISABLED", value)], &[]).unwrap();
        assert_eq!(s.telemetry.export().unwrap().is_none(), off, "{value}");
    }
    // An empty variable is unset.
    let s = load(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")], &[]).unwrap();
    assert!(s.telemetry.export().unwrap().is_none());
}

#[test]
fn content_capture_is_off_unless_the_genai_variable_or_the_file_asks() {
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
    let var = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT";
    let captures = |env: &[(&str, &str)], flags: &[&str]| {
        let s = load(env, flags).unwrap();
        s.telemetry.export().unwrap().unwrap().capture_content
    };
    assert!(!captures(&[endpoint], &[]));
    assert!(captures(&[endpoint, (var, "true")], &[]));
    assert!(captures(&[endpoint, (var, "True")], &[]));
    assert!(!captures(&[endpoint, (var, "false")], &[]));
    assert!(!captures(&[endpoint, (var, "1")], &[]));
    // The table's key, as a flag sets it; a flag wins over the variable.
    assert!(captures(&[endpoint], &["telemetry.capture_content=true"]));
    assert!(!captures(
        &[endpoint, (var, "true")],
        &["telemetry.capture_content=false"]
    ));
}

#[test]
fn a_bad_telemetry_value_is_a_start_up_error_naming_it() {
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
    for (env, named) in [
        (
            vec![endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
            "telemetry.protocol",
        ),
        (
            vec![endpoint, ("OTEL_TRACES_SAMPLER", "sometimes")],
            "telemetry.sampler",
        ),
        (
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318")],
            "telemetry.endpoint",
        ),
        (
            vec![endpoint, ("OTEL_BSP_MAX_QUEUE_SIZE", "0")],
            "telemetry.max_queue_size",
        ),
        (
            vec![endpoint, ("OTEL_BSP_SCHEDULE_DELAY", "soon")],
            "OTEL_BSP_SCHEDULE_DELAY",
        ),
        (
            vec![endpoint, ("OTEL_EXPORTER_OTLP_HEADERS", "api-key")],
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
    ] {
        let error = load(&env, &[]).unwrap_err().0;
        assert!(error.contains(named), "{named}: {error}");
    }
    // A header value is a credential: not repeated in the error.
    let error = load(
        &[endpoint, ("OTEL_EXPORTER_OTLP_HEADERS", "a=s3cret%0A")],
        &[],
    )
    .unwrap_err()
    .0;
    assert!(!error.contains("s3cret"), "{error}");
}

#[test]
fn a_message_size_set_by_flag_is_the_core_configs() {
    let s = load(&[], &["max_message_bytes=10"]).unwrap();
    let config = s.core_config(&["key".to_owned()], "bridge", 0);
    assert_eq!(config.request.max_message_bytes, 10);
}

#[test]
fn a_refused_key_is_told_where_the_key_is_kept() {
    let s = load(&[], &[]).unwrap();
    let hint = s
        .core_config(&["key".to_owned()], "bridge", 0)
        .credentials_hint;
    assert!(hint.contains("MCP_PROVIDER_API_KEY"), "{hint}");
    assert!(hint.contains("secrets file"), "{hint}");
}

/// Settings from a config file of `text` (and `env`), the file written to a
/// directory of the test's own.
fn load_file(name: &str, text: &str, env: &[(&str, &str)]) -> Result<Settings, BadSettings> {
    let dir = std::env::temp_dir().join(format!("settings-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(&file, text).unwrap();
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let loaded = Settings::load(Some(&file), env, &[], &Added::default());
    let _ = std::fs::remove_dir_all(&dir);
    loaded
}

#[test]
fn a_bad_value_names_its_flag_variable_or_file_key_and_only_a_file_its_line() {
    let why = "invalid type: string \"abc\", expected u64";
    let flag = load(&[], &["max_tokens=abc"]).unwrap_err().0;
    let variable = load(&[("MCP_PROVIDER_MAX_TOKENS", "abc")], &[])
        .unwrap_err()
        .0;
    let file = load_file("bad-value", "max_tokens = \"abc\"\n", &[])
        .unwrap_err()
        .0;
    for (error, named) in [
        (&flag, format!("--set max_tokens=…: {why}")),
        (
            &variable,
            format!("environment variable MCP_PROVIDER_MAX_TOKENS: {why}"),
        ),
        (&file, format!("key `max_tokens`: {why}")),
    ] {
        assert!(error.contains(&named), "{named}: {error}");
    }
    assert!(!flag.contains("line 1") && !variable.contains("line 1"));
}

#[test]
fn no_address_to_listen_on_is_a_bad_setting_named_listen() {
    let said = "bad setting `listen`: no address to listen on";
    let file = load_file("no-listen", "listen = []\n", &[]).unwrap_err().0;
    let variable = load(&[("MCP_PROVIDER_LISTEN", "")], &[]).unwrap_err().0;
    for error in [file, variable] {
        assert!(error.contains(said), "{error}");
    }
}
