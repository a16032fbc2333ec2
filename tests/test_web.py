"""The web search page, driven in headless Chromium (Debian's package; nothing downloads a browser).

Skipped where no Chromium is installed: `scripts/test.sh` installs it on Debian when run as root.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import SMALL_CORPUS
from searchkit import Document, Index
from searchkit.server import BackgroundServer, create_app

CHROMIUM = next((path for path in ("/usr/bin/chromium", shutil.which("chromium") or "") if path and Path(path).exists()), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium binary at /usr/bin/chromium (apt-get install chromium); the page tests need a real browser"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[test]')")

HOSTILE = Document(
    "hostile",
    "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\"> \x1b]8;;http://evil\x07link\x1b]8;;\x07 "
    "Lighthouse keepers tended the lamp through stormy nights.",
    "<b>Lighthouse</b> keepers",
    {"topic": "history", "year": 1900},
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, embedder: object) -> Iterator[str]:
    with Index.create(tmp_path_factory.mktemp("web") / "index", model=embedder) as index:
        index.add([*SMALL_CORPUS, HOSTILE])
        with BackgroundServer(create_app(index)) as server:
            yield server.url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: Chromium refuses to run as root otherwise (as in containers and CI).
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: object, site: str) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=site)  # type: ignore[attr-defined]
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


# Playwright's string predicates (wait_for_function) need eval, which the page's CSP forbids, as it should:
# the tests wait on selectors instead.


def hit_ids(page: object) -> list[str]:
    page.wait_for_selector("#results .hit")  # type: ignore[attr-defined]
    return page.eval_on_selector_all("#results .hit", "hits => hits.map(h => h.dataset.docId)")  # type: ignore[attr-defined]


def test_type_a_query_and_see_the_document(page: object, tmp_path: Path) -> None:
    page.goto("/")  # type: ignore[attr-defined]
    page.wait_for_selector("#status:has-text('documents')")  # type: ignore[attr-defined]
    page.fill("#q", "an animal that barks and fetches sticks")  # type: ignore[attr-defined]
    page.press("#q", "Enter")  # type: ignore[attr-defined]
    assert hit_ids(page)[0] == "dog"
    first = page.locator("#results .hit").first  # type: ignore[attr-defined]
    assert "Dogs" in first.locator(".title").inner_text()
    assert first.locator("mark").count() >= 1  # the query's words are marked in the snippet
    assert "topic" in first.locator(".meta").inner_text()
    assert "q=an+animal" in page.url  # type: ignore[attr-defined]
    page.screenshot(path=str(tmp_path / "search.png"), full_page=True)  # type: ignore[attr-defined]
    assert (tmp_path / "search.png").stat().st_size > 1000


def test_apply_a_filter(page: object, tmp_path: Path) -> None:
    page.goto("/?q=" + quote("something warm to drink"))  # type: ignore[attr-defined]
    assert "espresso" in hit_ids(page)
    page.click("#add-filter")  # type: ignore[attr-defined]
    row = page.locator("#filters .filter").last  # type: ignore[attr-defined]
    row.locator(".field").select_option("topic")
    row.locator(".value").fill("animals")
    with page.expect_response(lambda r: "/search?" in r.url and "where=" in r.url):  # type: ignore[attr-defined]
        row.locator(".value").press("Enter")
    sync_api.expect(page.locator("#results .hit").first).to_have_attribute("data-doc-id", re.compile("cat|dog|parrot"))  # type: ignore[attr-defined]
    assert set(hit_ids(page)) <= {"cat", "dog", "parrot"}
    assert "where=topic%3Danimals" in page.url  # type: ignore[attr-defined]
    page.screenshot(path=str(tmp_path / "filtered.png"), full_page=True)  # type: ignore[attr-defined]


def test_a_shared_link_renders_its_search(page: object) -> None:
    page.goto("/?q=coffee&mode=hybrid&k=2&where=" + quote("year>=2021"))  # type: ignore[attr-defined]
    assert hit_ids(page) == ["espresso", "parrot"] or hit_ids(page)[0] == "espresso"
    assert page.input_value("#q") == "coffee" and page.input_value("#mode") == "hybrid"  # type: ignore[attr-defined]
    assert page.locator("#filters .filter .value").input_value() == "2021"  # type: ignore[attr-defined]
    assert page.locator("#results .hit").count() <= 2  # type: ignore[attr-defined]


def test_a_question_gets_an_answer_and_the_document_opens(page: object, tmp_path: Path) -> None:
    page.goto("/?q=" + quote("what can parrots imitate?"))  # type: ignore[attr-defined]
    page.wait_for_selector("#answer .answer-text")  # type: ignore[attr-defined]
    assert "human speech" in page.inner_text("#answer .answer-text")  # type: ignore[attr-defined]
    page.screenshot(path=str(tmp_path / "answer.png"), full_page=True)  # type: ignore[attr-defined]
    page.click("#answer a.source")  # type: ignore[attr-defined]
    page.wait_for_selector("#document h1")  # type: ignore[attr-defined]
    assert page.inner_text("#document h1") == "Parrots"  # type: ignore[attr-defined]
    assert page.inner_text("#document mark") == "human speech"  # type: ignore[attr-defined]
    page.go_back()  # type: ignore[attr-defined]
    assert "parrot" in hit_ids(page)


def test_document_text_is_shown_as_text_never_run(page: object) -> None:
    page.goto("/?q=" + quote("lighthouse keepers stormy nights"))  # type: ignore[attr-defined]
    assert hit_ids(page)[0] == "hostile"
    hit = page.locator("#results .hit").first  # type: ignore[attr-defined]
    assert "<script>" in hit.inner_text() and hit.locator(".title").inner_text() == "<b>Lighthouse</b> keepers"
    assert hit.locator("script, img, b").count() == 0
    assert page.evaluate("window.pwned") is None  # type: ignore[attr-defined]
    hit.locator(".title").click()
    page.wait_for_selector("#document .text")  # type: ignore[attr-defined]
    assert "<img src=x" in page.inner_text("#document .text")  # type: ignore[attr-defined]
    assert page.locator("#document img, #document script").count() == 0  # type: ignore[attr-defined]
    assert page.evaluate("window.pwned") is None  # type: ignore[attr-defined]


def test_errors_are_shown_and_the_phone_layout_fits(browser: object, site: str, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, base_url=site, is_mobile=True)  # type: ignore[attr-defined]
    phone = context.new_page()
    phone.goto("/?q=tea&where=" + quote("colour=red"))
    phone.wait_for_selector("#error:not([hidden])")
    assert "unknown filter field 'colour'" in phone.inner_text("#error")
    phone.goto("/?q=" + quote("how do volcanoes erupt"))
    phone.wait_for_selector("#results .hit")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375  # nothing wider than the screen
    phone.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    context.close()


def test_a_link_without_a_mode_searches_as_the_index_is_tuned(browser: object, tmp_path: Path, embedder: object) -> None:
    from searchkit.config import SearchConfig

    with Index.create(tmp_path / "tuned", model=embedder) as index:
        index.add(SMALL_CORPUS)
        index.configure_search(SearchConfig(mode="hybrid"))
        with BackgroundServer(create_app(index)) as server:
            context = browser.new_context(base_url=server.url)  # type: ignore[attr-defined]
            page = context.new_page()
            page.goto("/?q=" + quote("pets that purr or bark"))
            tuned = [hit.doc_id for hit in index.search("pets that purr or bark", 10)]
            assert tuned != [hit.doc_id for hit in index.search("pets that purr or bark", 10, mode="dense")]
            assert hit_ids(page) == tuned
            assert page.input_value("#mode") == "hybrid"
            context.close()


def test_the_api_docs_render_offline(page: object) -> None:
    """Swagger UI is served by searchkit itself, so /docs lists the endpoints with no internet."""
    page.goto("/docs")  # type: ignore[attr-defined]
    page.wait_for_selector(".opblock-summary-path", timeout=20_000)  # type: ignore[attr-defined]
    paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.textContent)")  # type: ignore[attr-defined]
    assert {"/search", "/ask", "/info"} <= {path.replace("\u200b", "") for path in paths}
