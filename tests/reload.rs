//! In-process reload: routes swap for new requests, restart-only settings
//! are refused by name, and a bad file changes nothing.

mod support;

use support::*;

#[tokio::test]
async fn a_reload_swaps_routes_and_refuses_what_needs_a_restart() {
    let f = Fixture::start().await;
    let reloader = f.running().reloader.clone().unwrap();
    let c = client();
    let hash0 = f.running().live.load().config.hash.clone();

    f.write_config(&BASE_YAML.replace("name: company,", "name: company-v2,"));
    let hash1 = reloader.reload().unwrap();
    assert_ne!(hash0, hash1);
    c.get(f.url("/api/companies/co-100")).send().await.unwrap();
    eventually(std::time::Duration::from_secs(5), "request under the new route", || async {
        let n = f
            .metric("guise_http_requests_total{method=\"GET\",route=\"company-v2\",status_class=\"2xx\"}")
            .await;
        (n == 1.0).then_some(())
    })
    .await;
    assert_eq!(
        f.metric(&format!("guise_config_info{{hash=\"{hash1}\"}}"))
            .await,
        1.0
    );
    assert_eq!(
        f.metric(&format!("guise_config_info{{hash=\"{hash0}\"}}"))
            .await,
        0.0
    );

    // Moving the listener needs a restart: refused, and it says which key.
    let moved = BASE_YAML.replace("  http: {HTTP}", &format!("  http: {}", free_addr()));
    f.write_config(&moved);
    let err = reloader.reload().unwrap_err().to_string();
    assert!(err.contains("listeners.http"), "{err}");

    // A broken file: same errors as check-config, old config stays.
    f.write_config("listeners:\n  http: {HTTP}\nupstream: [oops]\n");
    let err = reloader.reload().unwrap_err().to_string();
    assert!(err.contains("line 3"), "{err}");
    assert_eq!(f.running().live.load().config.hash, hash1);
    assert_eq!(
        f.metric("guise_config_reloads_total{result=\"error\"}")
            .await,
        2.0
    );
    assert_eq!(
        c.get(f.url("/api/companies/co-100"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
