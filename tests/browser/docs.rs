//! `/docs`: Swagger UI over the contract, from the service alone.

use fantoccini::Locator;

use crate::{
    browser::{Browser, WAIT},
    common::spawn_service,
};

#[tokio::test]
async fn the_docs_render_every_operation_of_the_contract_without_the_internet() {
    let service = spawn_service().await;
    let browser = Browser::new().await;
    browser
        .goto(&format!("{}/docs", service.address))
        .await
        .expect("open /docs");
    // Operations are listed only once Swagger UI's script has loaded, run and read /openapi.json.
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(".opblock-summary-path"))
        .await
        .expect("Swagger UI lists operations");
    let mut paths = Vec::new();
    for operation in browser
        .find_all(Locator::Css(".opblock-summary-path"))
        .await
        .unwrap()
    {
        paths.push(
            operation
                .attr("data-path")
                .await
                .unwrap()
                .unwrap_or_default(),
        );
    }
    for expected in ["/v1/customers", "/v1/purchase-decisions", "/openapi.json"] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} not in {paths:?}"
        );
    }
    let title = browser
        .find(Locator::Css(".info .title"))
        .await
        .expect("the contract's title")
        .text()
        .await
        .unwrap();
    assert!(title.starts_with("partner-catalog"), "{title}");

    let requests = browser.assert_requests_stay_on(&service.address).await;
    for file in ["/docs/swagger-ui-bundle.js", "/openapi.json"] {
        assert!(
            requests.iter().any(|url| url.ends_with(file)),
            "{file} not requested: {requests:?}"
        );
    }
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    browser.screenshot("docs").await;
}

/// What makes the test above prove that the page works offline: the browser resolves no name,
/// so a page that needs a CDN cannot load it. `localhost` is the service itself, so the check
/// sends nothing off the machine.
#[tokio::test]
async fn the_browser_reaches_nothing_but_127_0_0_1() {
    let service = spawn_service().await;
    let browser = Browser::new().await;
    let by_name = service.address.replace("127.0.0.1", "localhost");
    let refused = browser.goto(&format!("{by_name}/healthz")).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("ERR_NAME_NOT_RESOLVED")),
        "{by_name} was resolved: {refused:?}"
    );
    browser
        .goto(&format!("{}/healthz", service.address))
        .await
        .expect("127.0.0.1 is reachable");
    let body = browser
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "ok");
}
