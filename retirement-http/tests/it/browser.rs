//! The console in a real headless Chromium (Debian's `chromium` and `chromedriver`, driven
//! over WebDriver): sign in, the overview's counts against the store, the ERRORED filter, a
//! learner reset with a reason that shows in its timeline, cancel offered only for PENDING,
//! and a bulk retry. `RETIREMENT_SCREENSHOTS=DIR` keeps the screenshots (docs/console holds
//! the ones docs/operations.md shows: `cargo xtask screenshots`).

use retirement_http::fake::console::{ConsoleWorld, OPERATOR, PASSWORD};
use retirement_store::RetirementStore;

use crate::console::now;
use crate::webdriver::{self, Browser};

async fn shot(browser: &Browser, name: &str) {
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    if let Ok(dir) = std::env::var("RETIREMENT_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_the_queue_in_chromium() {
    let Some(driver) = webdriver::start("an_operator_works_the_queue_in_chromium") else {
        return;
    };
    let world = ConsoleWorld::seeded(now()).await.unwrap();
    let (url, _stop) = world.serve(None).await.unwrap();
    let browser = Browser::open(&driver).await;

    // Anonymous: the sign-in page. A wrong password stays there with a message.
    browser.go(&format!("{url}/")).await;
    assert!(browser.url().await.ends_with("/login"));
    browser
        .type_into(&browser.find("#name").await, OPERATOR)
        .await;
    browser
        .type_into(&browser.find("#password").await, "not it")
        .await;
    browser.click(&browser.find("#sign-in").await).await;
    assert!(
        browser
            .text_of("#login-error")
            .await
            .contains("wrong password")
    );
    browser
        .type_into(&browser.find("#name").await, OPERATOR)
        .await;
    shot(&browser, "login").await;
    browser
        .type_into(&browser.find("#password").await, PASSWORD)
        .await;
    browser.click(&browser.find("#sign-in").await).await;

    // The overview's counts are the store's.
    let errored = world.in_state("ERRORED").len();
    let card = browser.text_of("#errored b").await;
    assert_eq!(card, errored.to_string());
    for cell in browser.find_all("#by-state td.num").await {
        let text = browser.text(&cell).await;
        let _: usize = text.parse().unwrap();
    }
    let rows = browser.find_all("#by-state tbody tr").await;
    let mut seen = 0;
    for row in rows {
        let text = browser.text(&row).await;
        let (state, n) = text.rsplit_once(' ').unwrap();
        let expected = world.learners.iter().filter(|l| l.state == state).count();
        assert_eq!(n.parse::<usize>().unwrap(), expected, "{state}");
        seen += expected;
    }
    assert_eq!(seen, world.learners.len());
    browser.find("#state-diagram").await;
    shot(&browser, "overview").await;

    // Filter to ERRORED.
    browser.go(&format!("{url}/learners")).await;
    browser
        .click(&browser.find("#filter-state option[value=ERRORED]").await)
        .await;
    browser.click(&browser.find("#filter").await).await;
    // Found only once the filtered page has loaded (the implicit wait).
    assert_eq!(
        browser.text_of("#total[data-state=ERRORED]").await,
        format!("{errored} learner(s) match.")
    );
    let states = browser.find_all("#learners td.state").await;
    assert_eq!(states.len(), errored);
    for cell in &states {
        assert_eq!(browser.text(cell).await, "ERRORED");
    }
    shot(&browser, "learners").await;

    // Open the first, reset it with a reason; the reason shows in its timeline.
    browser
        .click(&browser.find("#learners tbody tr td a").await)
        .await;
    // Not PENDING: cancel is offered as unavailable, with why (and the page has loaded).
    assert!(
        browser
            .text_of("#unavailable-cancel")
            .await
            .contains("only a PENDING request can be cancelled")
    );
    let id: i64 = browser
        .url()
        .await
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(!browser.source().await.contains("id=\"do-cancel\""));
    browser
        .click(&browser.find("#reset-to option[value=PENDING]").await)
        .await;
    browser
        .type_into(
            &browser.find("#form-reset input[name=reason]").await,
            "ticket 4711: vendor outage over",
        )
        .await;
    browser.click(&browser.find("#do-reset").await).await;
    assert_eq!(browser.text_of("#notice").await, "Reset to PENDING.");
    assert_eq!(browser.text_of("#state").await, "PENDING");
    let timeline = browser.text_of("#timeline").await;
    assert!(
        timeline.contains("ticket 4711: vendor outage over"),
        "{timeline}"
    );
    assert!(
        timeline.contains(&format!("operator:{OPERATOR}")),
        "{timeline}"
    );
    let r = world
        .store
        .get(retirement_core::RetirementId(id))
        .await
        .unwrap();
    assert_eq!(r.current_state(), "PENDING");
    // Now PENDING: cancel is offered.
    browser.find("#do-cancel").await;
    shot(&browser, "learner").await;

    // Bulk: retry every remaining ERRORED learner.
    browser.go(&format!("{url}/bulk")).await;
    let boxes = browser.find_all("#learners input[type=checkbox]").await;
    assert_eq!(boxes.len(), errored - 1);
    for b in &boxes {
        browser.click(b).await;
    }
    browser
        .type_into(&browser.find("#bulk-reason").await, "outage over")
        .await;
    shot(&browser, "bulk").await;
    browser.click(&browser.find("#do-bulk").await).await;
    assert!(
        browser
            .text_of("#bulk-result")
            .await
            .starts_with(&format!("{} moved, 0 refused.", errored - 1))
    );
    assert_eq!(browser.text_of("#none").await, "No learner is ERRORED.");
    for l in world.in_state("ERRORED") {
        assert_ne!(
            world.store.get(l.id).await.unwrap().current_state(),
            "ERRORED"
        );
    }
    // No page the browser saw holds an original.
    let source = browser.source().await;
    for l in &world.learners {
        assert!(!source.contains(&l.email));
    }
    browser.close().await;
}
