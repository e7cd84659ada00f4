//! The service's pages in a real browser: headless Chromium driven through chromedriver, against
//! the service on a random port over a fresh database, with no way out to the internet.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`CHROMIUM` and `CHROMEDRIVER` name other
//! binaries); a missing one fails the tests, never skips them. `UPDATE_SCREENSHOTS=1` writes the
//! screenshots the tests take to `docs/screenshots/`.

#[path = "../common/mod.rs"]
mod common;

mod browser;
mod console;
mod docs;
