"""The built book, page by page, in a real headless browser (Debian's Chromium, driven by
Selenium), as a reader sees it.

Runs after ``jupyter-book build . -W`` (README's first command, so CI builds first) on the
pages in ``_build/html``, served from localhost. MathJax is served locally from its npm
package (``npm install --prefix .mathjax mathjax@3.2.2``): the pages load it from a CDN,
which CI cannot reach, so a copy of the site with the CDN address replaced is served.

At 1280 px wide every page must have no MathJax error, no raw TeX or stray ``$`` left in its
text, every image loaded, no display equation or table wider than the content column, no
display equation with a glyph drawn outside its box (MathJax clips a numbered display that
does not fit, so only the glyphs show the cut), no error output cell, no code block (a
cell's input or code in the prose) and no printed output that scrolls sideways, and, for a
notebook, its Colab launch button. At 412 px wide (a phone)
the horizontal overflow of each page is reported, not failed. Two pages are screenshot.
The report, with the test's wall time, goes to ``_build/browser/report.json`` with the
screenshots; nothing from it is committed.

Without a built book, Chromium or MathJax the test is skipped, saying what is missing; under
CI (``$CI`` set) it fails instead, so that CI cannot pass without it.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import socketserver
import threading
import time
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILT = ROOT / "_build" / "html"
MATHJAX = ROOT / ".mathjax" / "node_modules" / "mathjax" / "es5"
CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/"
REPORT = ROOT / "_build" / "browser"
SCREENSHOTS = ("book/theory/03_perception.html", "book/experiments/02_laptop.html")
CHECKED_PAGES = 13  # intro, quickstart, five theory and four experiment chapters, history,
#                     bibliography

# Runs in the page once it has loaded and MathJax has typeset it; returns what it found.
INSPECT = r"""
const done = arguments[arguments.length - 1];
(async () => {
  // MathJax loads deferred: wait for it where the page has math, then for its typesetting.
  const hasMath = document.querySelector(".math") !== null;
  for (let waited = 0; hasMath && !(window.MathJax && MathJax.startup) && waited < 30000;
       waited += 100) {
    await new Promise(resolve => setTimeout(resolve, 100));
  }
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  // Lazy images load only near the viewport: load them all, for at most 20 s.
  document.querySelectorAll("img").forEach(image => { image.loading = "eager"; });
  for (let waited = 0; [...document.images].some(image => !image.complete) && waited < 20000;
       waited += 100) {
    await new Promise(resolve => setTimeout(resolve, 100));
  }
  const article = document.querySelector("article.bd-article") || document.querySelector("main");
  const column = article.getBoundingClientRect().width;
  const skip = "pre, code, kbd, script, style, mjx-container, .highlight, .cell_output, " +
               "textarea, .headerlink";
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  const tex = /\$|\\\(|\\\)|\\\[|\\\]|\\(frac|lVert|rVert|mathbb|mathrm|sum|tau|hat|widehat|begin|end|left|right|cdot|le|ge|qquad|quad|sigma|pi|Delta)(?![a-zA-Z])/;
  const raw = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest(skip)) continue;
    const match = node.textContent.match(tex);
    if (match) {
      const at = Math.max(0, match.index - 40);
      raw.push(node.textContent.slice(at, match.index + 40).replace(/\s+/g, " "));
    }
  }
  const wide = (elements, inner) => [...elements].map(element => {
    const box = (inner ? element.querySelector(inner) : null) || element;
    return {width: Math.round(Math.max(box.getBoundingClientRect().width, box.scrollWidth)),
            text: element.textContent.slice(0, 60).replace(/\s+/g, " ")};
  }).filter(item => item.width > column + 1);
  done({
    column: Math.round(column),
    mathErrors: [...document.querySelectorAll("mjx-merror")].map(e => e.textContent.slice(0, 80)),
    hasMath: hasMath,
    mathJaxLoaded: !!(window.MathJax && MathJax.startup),
    mathCount: document.querySelectorAll("mjx-container").length,
    rawTex: raw,
    brokenImages: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))
                                      .map(i => i.getAttribute("src")),
    // MathJax lays a numbered display out in a full-width table that clips what does not
    // fit, so neither its box nor mjx-math is ever wider than the column: measure what is
    // drawn, the glyphs, against the display's own box.
    cutMath: [...article.querySelectorAll('mjx-container[display="true"]')].map(display => {
      const box = display.getBoundingClientRect();
      const glyphs = [...display.querySelectorAll("mjx-c, mjx-utext")]
        .map(glyph => glyph.getBoundingClientRect()).filter(r => r.width > 0);
      const cut = Math.max(0, ...glyphs.map(r => r.right - box.right),
                           ...glyphs.map(r => box.left - r.left));
      return {cut: Math.round(cut), text: display.textContent.slice(0, 60)};
    }).filter(item => item.cut > 1),
    wideMath: wide(article.querySelectorAll('mjx-container[display="true"]'), "mjx-math"),
    wideTables: wide(article.querySelectorAll("table")),
    wideCode: [...article.querySelectorAll("div.highlight pre")]
      .filter(pre => !pre.closest(".cell_output") && pre.scrollWidth > pre.clientWidth + 1)
      .map(pre => ({width: pre.scrollWidth, box: pre.clientWidth,
                    text: pre.textContent.split("\n").reduce(
                      (a, b) => (b.length > a.length ? b : a), "").slice(0, 80)})),
    wideOutputs: [...article.querySelectorAll(".cell_output pre")]
      .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
      .map(pre => ({width: pre.scrollWidth, box: pre.clientWidth,
                    text: pre.textContent.split("\n").reduce(
                      (a, b) => (b.length > a.length ? b : a), "").slice(0, 80)})),
    errorOutputs: article.querySelectorAll(".output.traceback, .output.error").length,
    launch: !!document.querySelector('a[href*="colab.research.google.com"]'),
    overflow: Math.max(0, document.documentElement.scrollWidth - window.innerWidth),
  });
})();
"""


def need(condition: object, reason: str) -> None:
    """Skip without ``condition``; under CI, fail."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {reason}")
    pytest.skip(reason)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *arguments) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The built book with MathJax served locally, on a localhost port: (url, folder)."""
    need(BUILT.is_dir(), "no built book in _build/html: run `jupyter-book build . -W` first")
    need(MATHJAX.is_dir(), "no local MathJax: run `npm install --prefix .mathjax mathjax@3.2.2`")
    folder = tmp_path_factory.mktemp("site") / "html"
    shutil.copytree(BUILT, folder)
    shutil.copytree(MATHJAX, folder / "_mathjax")
    for page in folder.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        if CDN in text:
            page.write_text(text.replace(CDN, "/_mathjax/"), encoding="utf-8")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    need(chromium and driver, "Debian's Chromium is not installed: "
         "`apt-get install chromium chromium-driver`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,900"):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.set_script_timeout(60)
    session.set_page_load_timeout(60)
    yield session
    session.quit()


def pages(folder: Path) -> list[str]:
    """The book's pages (relative paths), in the order of the built files."""
    return sorted(path.relative_to(folder).as_posix() for path in (folder / "book").rglob("*.html"))


def inspect_page(browser, url: str, width: int) -> dict:
    browser.set_window_size(width, 900)
    browser.get(url)
    return browser.execute_async_script(INSPECT)


def test_every_page_reads_cleanly_in_a_browser(site, browser):
    started = time.perf_counter()
    url, folder = site
    found = pages(folder)
    assert len(found) == CHECKED_PAGES, found
    REPORT.mkdir(parents=True, exist_ok=True)
    report, problems = {}, []
    for page in found:
        desktop = inspect_page(browser, f"{url}/{page}", 1280)
        notebook = (folder / "_sources" / page).with_suffix(".ipynb").is_file()
        if page in SCREENSHOTS:
            browser.save_screenshot(str(REPORT / page.replace("/", "_").replace(".html", ".png")))
        phone = inspect_page(browser, f"{url}/{page}", 412)
        report[page] = {"desktop": desktop, "phone_overflow_px": phone["overflow"],
                        "notebook": notebook}
        failures = {
            "MathJax errors": desktop["mathErrors"],
            "raw TeX or a stray $": desktop["rawTex"],
            "images that did not load": desktop["brokenImages"],
            "display math cut off (px of glyphs outside its box)": desktop["cutMath"],
            f"display math wider than the {desktop['column']} px column": desktop["wideMath"],
            f"tables wider than the {desktop['column']} px column": desktop["wideTables"],
            "code that scrolls sideways (its longest line shown)": desktop["wideCode"],
            "printed output that scrolls sideways (its longest line shown)":
                desktop["wideOutputs"],
            "error output cells": desktop["errorOutputs"],
            "no Colab launch button": notebook and not desktop["launch"],
            "MathJax did not load": desktop["hasMath"] and not desktop["mathJaxLoaded"],
        }
        problems += [f"{page}: {what}: {value}" for what, value in failures.items() if value]
    seconds = time.perf_counter() - started
    overflowing = {page: entry["phone_overflow_px"] for page, entry in report.items()
                   if entry["phone_overflow_px"]}
    (REPORT / "report.json").write_text(json.dumps(
        {"wall_time_seconds": seconds, "pages": report, "overflow_at_412px": overflowing},
        indent=1) + "\n")
    print(f"browser test: {len(found)} pages at 1280 and 412 px in {seconds:.0f} s; "
          f"horizontal overflow at 412 px: {overflowing or 'none'}")
    if overflowing:
        warnings.warn(f"horizontal overflow at 412 px (px per page): {overflowing}")
    assert not problems, "\n".join(problems)
    assert all(entry["desktop"]["mathCount"] for page, entry in report.items()
               if "theory" in page), "a theory chapter shows no typeset equation"
