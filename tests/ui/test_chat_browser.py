"""End to end in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) drives ``streamlit run`` on localhost over the sample corpus with the
embedded model. It logs in, asks a question, waits for the answer, expands a citation, applies
a filter, submits feedback, and checks each step in the DOM. The answered page is saved as
``test-artifacts/chat-answer.png``.

Needs: ``apt-get install chromium chromium-driver`` (``.ci/run`` installs them) and the
``selenium`` package (in the dev extra). Without them the test skips and says why.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.answer_fixture import AnswerIndex
from tests.llama_server import free_port, wait_until_up
from ui.auth import UserStore

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("EVIDEX_TEST_ARTIFACTS", REPO / "test-artifacts"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
PASSWORD = "browser test password"

if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
    pytest.skip(
        "BROWSER TEST SKIPPED: Chromium and its driver are not installed; run "
        "`apt-get install chromium chromium-driver` (.ci/run does this) to test the chat in "
        "a real browser",
        allow_module_level=True,
    )
pytest.importorskip("selenium", reason="BROWSER TEST SKIPPED: pip install selenium (dev extra)")
pytest.importorskip("streamlit", reason="BROWSER TEST SKIPPED: the ui extra is not installed")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def chat_url(
    answer_index: AnswerIndex, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    data = tmp_path_factory.mktemp("chat-data")
    UserStore(data / "users.json").add("alice", PASSWORD)
    env = {
        "EVIDEX_DATA_DIR": str(data),
        "EVIDEX_STORE__PATH": str(answer_index.store),
        "EVIDEX_LLM__MAX_TOKENS": "60",
        "HF_HUB_OFFLINE": "1",
    }
    for url in _streamlit(env, data):
        yield url, data


def _streamlit(env: dict[str, str], data: Path) -> Iterator[str]:
    """``streamlit run`` of the chat on a free loopback port with ``env`` added; yields its
    URL once it answers, and stops it after."""
    port = free_port()
    log = (data / "streamlit.log").open("w+b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "ui" / "chat_app.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal"],
        env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, f"{url}/_stcore/health", log)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def served_chat_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The chat with a served (scripted, OpenAI-compatible) model over an index holding 40
    PubMedQA abstracts and a retracted PubMed record."""
    from ingest.pipeline import ingest_paths
    from retrieval.index import Index
    from retrieval.settings import load_settings
    from tests.conftest import shared_path
    from tests.ingest.test_notices import retracted_copy
    from tests.llama_server import serve_app
    from tests.scripted_openai import create_app

    data = tmp_path_factory.mktemp("served-chat")
    corpus = data / "corpus.jsonl"
    lines = shared_path("pubmedqa", "beir_dev", "corpus.jsonl").read_text().splitlines()[:40]
    corpus.write_text("\n".join(lines) + "\n")
    store = data / "store"
    with Index(load_settings(data_dir=data, store={"path": store}), store) as idx:
        ingest_paths([corpus], idx, "beir", pmid_ids=True)
        ingest_paths([retracted_copy(data / "retracted.xml")], idx, "pubmed")
    UserStore(data / "users.json").add("alice", PASSWORD)
    with serve_app(create_app()) as model_url:
        env = {"EVIDEX_DATA_DIR": str(data), "EVIDEX_STORE__PATH": str(store),
               "EVIDEX_LLM__KIND": "openai", "EVIDEX_LLM__BASE_URL": f"{model_url}/v1",
               "EVIDEX_PLANNER__USE_LLM": "never", "HF_HUB_OFFLINE": "1"}  # fmt: skip
        yield from _streamlit(env, data)


@pytest.fixture(scope="module")
def zh_chat_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[dict]]]:
    """The chat in Chinese (chat.language = 'zh') over 40 real CMExam explanations ingested
    as a Chinese textbook-style JSONL, with the embedded defaults."""
    import json

    from ingest.pipeline import ingest_paths
    from retrieval.index import Index
    from retrieval.settings import load_settings
    from tests.conftest import shared_path

    data = tmp_path_factory.mktemp("zh-chat")
    rows = [json.loads(x) for x in shared_path("zh", "cmexam_dev.jsonl").read_text().splitlines()]
    rows = [r for r in rows if len(r.get("explanation") or "") > 80][:40]
    corpus = data / "cmexam.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"cmexam-{i}", "title": r["question"][:40],
                                          "text": r["explanation"]}, ensure_ascii=False) + "\n"
                              for i, r in enumerate(rows)))  # fmt: skip
    store = data / "store"
    with Index(load_settings(data_dir=data, store={"path": store}), store) as idx:
        ingest_paths([corpus], idx, "guidelines")
    UserStore(data / "users.json").add("alice", PASSWORD)
    env = {"EVIDEX_DATA_DIR": str(data), "EVIDEX_STORE__PATH": str(store),
           "EVIDEX_CHAT__LANGUAGE": "zh", "HF_HUB_OFFLINE": "1"}  # fmt: skip
    for url in _streamlit(env, data):
        yield url, rows


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,2200"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: WebDriver, timeout: float = 60) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, timeout, poll_frequency=0.3)


def _click(driver: WebDriver, element: WebElement, timeout: float = 30) -> None:
    """Click ``element`` once nothing covers it: it is scrolled to the middle of the window
    first, and the click is retried while Streamlit is still laying the page out (a click
    on an element another one covers fails instead of landing elsewhere)."""
    from selenium.common.exceptions import ElementClickInterceptedException

    def clicked(d: WebDriver) -> bool:
        d.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        try:
            element.click()
        except ElementClickInterceptedException:
            return False
        return True

    _wait(driver, timeout).until(clicked)


def _text_on_page(text: str):  # type: ignore[no-untyped-def]
    return lambda d: text in d.find_element(By.TAG_NAME, "body").text


def _input(driver: WebDriver, label: str) -> WebElement:
    return _wait(driver).until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, f'input[aria-label="{label}"]'))
    )


def _ask(driver: WebDriver, question: str) -> None:
    box = _wait(driver).until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, '[data-testid="stChatInputTextArea"]'))
    )
    box.send_keys(question)
    box.send_keys(Keys.ENTER)


@pytest.fixture
def last_page(browser: WebDriver) -> Iterator[None]:
    """Keep what the browser showed last, pass or fail (screenshot and DOM)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield
    browser.save_screenshot(str(ARTIFACTS / "chat-last-page.png"))
    (ARTIFACTS / "chat-last-page.html").write_text(browser.page_source, "utf-8")


def test_clinician_session_in_a_real_browser(
    chat_url: tuple[str, Path],
    browser: WebDriver,
    answer_index: AnswerIndex,
    last_page: None,
) -> None:
    url, data = chat_url
    # 1. log in
    _sign_in(browser, url)
    assert "a licensed clinician must review" in browser.find_element(By.TAG_NAME, "body").text
    # 2. ask, and wait for the verified answer
    _ask(browser, answer_index.question)
    _wait(browser, 300).until(_text_on_page("Was this answer right?"))
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "References" in body and "Evidence retrieved" in body
    # the embedded default answers with an evidence digest: quotes, labelled, no consensus
    assert "Evidence digest: quoted from the sources, no model synthesis" in body
    assert "“" in body and "needs a served model" in body
    browser.save_screenshot(str(ARTIFACTS / "chat-answer.png"))
    # 3. expand a citation: its card shows the evidence badge, the passage and the source link
    card = browser.find_element(
        By.XPATH, "//details[.//summary//p[starts-with(normalize-space(.), '[1]')]]"
    )
    _click(browser, card.find_element(By.TAG_NAME, "summary"))
    _wait(browser).until(
        lambda d: card.find_element(
            By.XPATH, ".//a[normalize-space(.)='Open source']"
        ).is_displayed()
    )
    assert card.find_element(By.TAG_NAME, "blockquote").text.strip()  # the cited passage
    link = (
        card.find_element(By.XPATH, ".//a[normalize-space(.)='Open source']").get_attribute("href")
        or ""
    )
    assert "pubmed.ncbi.nlm.nih.gov/" in link
    browser.save_screenshot(str(ARTIFACTS / "chat-citation.png"))
    # 4. feedback on the answer: thumbs down, a comment, a corrected answer
    browser.find_element(By.XPATH, "//label[.//p[contains(., 'Not helpful')]]").click()
    _input(browser, "Comment (optional)").send_keys("cite the trial's effect size")
    browser.find_element(
        By.CSS_SELECTOR, 'textarea[aria-label="Corrected answer (optional)"]'
    ).send_keys("Yes: tailored interventions increased mammography use [1].")
    browser.find_element(By.XPATH, "//button[.//p[text()='Send feedback']]").click()
    _wait(browser).until(_text_on_page("Feedback saved"))
    with sqlite3.connect(data / "feedback.sqlite") as db:
        row = db.execute("SELECT user, rating, comment FROM feedback").fetchone()
    assert row == ("alice", -1, "cite the trial's effect size")
    # 5. a filter: only case reports (none in this index) -> a visibly insufficient answer
    levels = browser.find_element(
        By.XPATH, "//div[@data-testid='stMultiSelect'][.//p[text()='Evidence levels']]//input"
    )
    levels.click()
    levels.send_keys("Case report")
    levels.send_keys(Keys.ENTER)
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    _wait(browser).until(lambda d: d.find_elements(By.XPATH, "//span[contains(., 'Case report')]"))
    _ask(browser, "Does aspirin prevent stroke after a transient ischemic attack?")

    def answered(d: WebDriver) -> WebElement | bool:
        msgs = d.find_elements(By.CSS_SELECTOR, '[data-testid="stChatMessage"]')
        return len(msgs) == 4 and "Was this answer right?" in msgs[-1].text and msgs[-1]

    last = _wait(browser, 300).until(answered)
    assert isinstance(last, WebElement) and "Insufficient evidence" in last.text
    browser.save_screenshot(str(ARTIFACTS / "chat-filtered.png"))
    audit = (data / "audit.jsonl").read_text()
    assert audit.count('"event": "ask"') == 2 and '"event": "feedback"' in audit


EN_LOGIN = ("User name", "Password", "Sign in", "Signed in as alice",
            "a licensed clinician must review")  # fmt: skip


def _sign_in(browser: WebDriver, url: str, labels: tuple[str, ...] = EN_LOGIN) -> None:
    """Sign in as alice; ``labels``: user and password fields, button, the signed-in line and
    a piece of the review notice, in the page's language."""
    user, password, button, signed_in, notice = labels
    browser.delete_all_cookies()
    browser.get(url)
    _input(browser, user).send_keys("alice")
    _input(browser, password).send_keys(PASSWORD)
    browser.find_element(By.XPATH, f"//button[.//p[text()='{button}']]").click()
    _wait(browser).until(_text_on_page(signed_in))
    # The sidebar can show the user while the main area still holds the stale login form for
    # a moment (Streamlit's rerun): wait for the chat page itself.
    _wait(browser).until(_text_on_page(notice))


def _answered(n: int, done: str = "Was this answer right?"):  # type: ignore[no-untyped-def]
    def check(d: WebDriver) -> WebElement | bool:
        msgs = d.find_elements(By.CSS_SELECTOR, '[data-testid="stChatMessage"]')
        return len(msgs) == n and done in msgs[-1].text and msgs[-1]

    return check


def test_served_model_consensus_and_a_retracted_record_in_a_real_browser(
    served_chat_url: str, browser: WebDriver, answer_index: AnswerIndex, last_page: None
) -> None:
    _sign_in(browser, served_chat_url)
    # 1. a synthesized answer whose two cited sources the model judges to disagree
    _ask(browser, answer_index.question)
    last = _wait(browser, 300).until(_answered(2))
    assert isinstance(last, WebElement)
    assert "Answer with verified citations" in last.text
    assert "Sources disagree" in last.text and "Consensus of 2 cited sources" in last.text
    assert "1 supports, 1 contradicts" in last.text
    browser.save_screenshot(str(ARTIFACTS / "chat-consensus.png"))
    # 2. a question that retrieves the retracted record: left out, and shown as retracted
    _ask(browser, "Is leucocyte telomere length associated with pancreatic cancer risk?")
    last = _wait(browser, 300).until(_answered(4))
    assert isinstance(last, WebElement)
    assert "was retrieved but left out: it is retracted" in last.text
    left = last.find_element(
        By.XPATH, ".//details[.//summary//p[starts-with(normalize-space(.), 'Left out')]]"
    )
    _click(browser, left.find_element(By.TAG_NAME, "summary"))
    _wait(browser).until(lambda d: "RETRACTED" in left.text and "Retraction in PMID" in left.text)
    browser.save_screenshot(str(ARTIFACTS / "chat-retracted.png"))


def test_a_chinese_session_in_a_real_browser(
    zh_chat_url: tuple[str, list[dict]], browser: WebDriver, last_page: None
) -> None:
    url, rows = zh_chat_url
    _sign_in(browser, url, ("用户名", "密码", "登录", "已登录：alice", "须由执业临床医师审核"))
    _ask(browser, rows[3]["question"])
    last = _wait(browser, 300).until(_answered(2, "这个回答正确吗？"))
    assert isinstance(last, WebElement)
    text = last.text
    # the embedded default quotes the Chinese sources, labelled in Chinese
    assert "证据摘要：摘自来源原文，未经模型综合" in text and "参考文献" in text
    assert "“" in text and "这个回答正确吗？" in text and "提交反馈" in text
    quoted = text.split("“", 1)[1].split("”", 1)[0]
    assert any(quoted[:12] in r["explanation"] for r in rows), quoted
    assert "证据摘要：逐字摘自来源的句子" in text and "References" not in text
    card = last.find_element(
        By.XPATH, ".//details[.//summary//p[starts-with(normalize-space(.), '[1]')]]"
    )
    _click(browser, card.find_element(By.TAG_NAME, "summary"))
    _wait(browser).until(lambda d: "已引用" in card.text or "未引用" in card.text)
    browser.save_screenshot(str(ARTIFACTS / "chat-chinese.png"))
