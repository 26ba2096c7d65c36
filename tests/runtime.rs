//! The process-wide rule of pingora's no-steal runtime. In a test binary of
//! its own: once a process built a gateway with work stealing off, it
//! builds no other, which would break every fixture running beside it.

mod support;

use std::sync::Arc;

use guise::config::Config;
use guise::server::{BuildOptions, Gateway, StartError};
use support::*;

fn build(work_stealing: bool) -> Result<Gateway, StartError> {
    let yaml = BASE_YAML
        .replace(
            "  work_stealing: true\n",
            if work_stealing {
                "  work_stealing: true\n"
            } else {
                ""
            },
        )
        .replace("{HTTP}", &free_addr().to_string())
        .replace("{OPS}", &free_addr().to_string())
        .replace("{UPSTREAM}", "127.0.0.1:1");
    let config = Config::parse(&yaml, "test.yaml", std::path::Path::new("."), &test_env)
        .expect("valid config");
    assert_eq!(config.server.work_stealing, work_stealing);
    Gateway::build(
        config,
        BuildOptions {
            config_path: None,
            reload_on_sighup: false,
            env: Arc::new(test_env),
        },
    )
}

/// With work stealing off (the binary's default) a process gets one
/// gateway: pingora 0.9 may hand a later runtime the handles of a no-steal
/// one that stopped (cloudflare/pingora#981), and that gateway would then
/// serve nothing without a word. Later builds, of either kind, are refused
/// and say why; gateways with work stealing on may be built before.
#[test]
fn after_a_no_steal_gateway_a_process_builds_no_other_and_says_why() {
    drop(build(true).expect("a work-stealing gateway builds"));
    drop(build(false).expect("the first no-steal gateway builds"));
    for work_stealing in [false, true] {
        let err = match build(work_stealing) {
            Err(e) => e,
            Ok(_) => {
                panic!("a gateway (work_stealing: {work_stealing}) was built after a no-steal one")
            }
        };
        assert!(matches!(err, StartError::SecondNoStealRuntime));
        let msg = err.to_string();
        assert!(
            msg.contains("server.work_stealing") && msg.contains("pingora#981"),
            "{msg}"
        );
    }
}
