"""The chat's interface text in English and Chinese, and which of the two a user sees.

Only the interface is translated here (labels, badges, notices, the review notice); the
answer itself is in the language the model or the quoted sources wrote it in. A user's choice
(the sidebar) is kept per user in ``<data_dir>/preferences.json``; without one,
``chat.language`` decides, and 'auto' follows the language of the user's last question (before
any, the browser's ``Accept-Language``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Literal

from answer.digest import DESIGNS_ZH
from answer.types import REVIEW_NOTICE, SOURCES_SAY_LABEL
from retrieval.errors import InputError
from retrieval.language import detect

log = logging.getLogger(__name__)

UiLang = Literal["en", "zh"]
CHOICES = ("auto", "en", "zh")

TEXT: dict[str, tuple[str, str]] = {
    # login
    "sign_in_caption": ("Evidence-based answers with citations. Sign in to continue.",
                        "循证医学问答，每条结论附可查证的引用。请登录后使用。"),
    "user_name": ("User name", "用户名"),
    "password": ("Password", "密码"),
    "sign_in": ("Sign in", "登录"),
    "log_in": ("Log in", "登录"),
    "no_users": ("No users yet: create one with `evidex users add NAME` (users file {path}).",
                 "尚无用户：请用 `evidex users add NAME` 创建（用户文件 {path}）。"),
    "locked": ("Too many failed sign-ins: try again in {minutes} minute(s), or ask your evidex "
               "administrator to reset the password (evidex users add NAME).",
               "登录失败次数过多：请 {minutes} 分钟后再试，或请 evidex 管理员重置密码"
               "（evidex users add NAME）。"),
    "wrong_login": ("Wrong user name or password.", "用户名或密码错误。"),
    # sidebar
    "signed_in_as": ("Signed in as **{user}**", "已登录：**{user}**"),
    "sign_out": ("Sign out", "退出登录"),
    "evidence": ("Evidence", "证据"),
    "years": ("Publication years", "发表年份"),
    "levels": ("Evidence levels", "证据等级"),
    "sources": ("Sources", "来源"),
    "language_filter": ("Language", "文献语言"),
    "English": ("English", "英文"),
    "Chinese": ("Chinese", "中文"),
    "n_sources": ("Number of sources", "来源数量"),
    "system": ("System", "系统"),
    "model": ("Model: {name}", "模型：{name}"),
    "index": ("Index: {documents} documents, {chunks} passages ({path})",
              "索引：{documents} 篇文献，{chunks} 个段落（{path}）"),
    "index_unavailable": ("Index: unavailable ({error})", "索引：不可用（{error}）"),
    # patient
    "patient_context": ("Patient context", "患者信息"),
    "patient_active": ("Active: {summary}", "已启用：{summary}"),
    "clear_patient": ("Clear patient context", "清除患者信息"),
    "patient_inactive": ("Not active. Answers then ignore patient specifics.",
                         "未启用：回答不考虑患者的具体情况。"),
    "age": ("Age (years)", "年龄（岁）"),
    "sex": ("Sex", "性别"),
    "female": ("female", "女"),
    "male": ("male", "男"),
    "conditions": ("Conditions (comma separated)", "疾病（以逗号分隔）"),
    "medications": ("Medications (comma separated)", "用药（以逗号分隔）"),
    "allergies": ("Allergies (comma separated)", "过敏（以逗号分隔）"),
    "use_patient": ("Use this patient", "使用此患者信息"),
    "upload": ("…or upload a JSON record / FHIR Bundle", "……或上传 JSON 记录 / FHIR Bundle"),
    "fill_one": ("Fill in at least one field.", "请至少填写一项。"),
    "patient_not_used": ("Patient record not used: {error}", "未使用患者记录：{error}"),
    "patient_info": ("Patient context is active for new questions (see the sidebar).",
                     "患者信息已对新提问启用（见侧栏）。"),
    # the answer
    "sources_disagree": ("Sources disagree", "来源结论不一致"),
    "consensus": ("Consensus", "来源结论一致"),
    "insufficient": ("Insufficient evidence", "证据不足"),
    "digest": ("Evidence digest: quoted from the sources, no model synthesis",
               "证据摘要：摘自来源原文，未经模型综合"),
    "degraded": ("Model unavailable: evidence digest quoted from the sources",
                 "模型不可用：以下为摘自来源原文的证据摘要"),
    "answer": ("Answer with verified citations", "引用经核实的回答"),
    "removed": ("Removed sentences ({n}): not supported by sources",
                "已删除的句子（{n}）：来源不支持"),
    "unsupported": ("unsupported", "不受支持"),
    "references": ("References", "参考文献"),
    "retracted": ("RETRACTED", "已撤稿"),
    "grade": ("Grade {grade}", "推荐等级 {grade}"),
    "unsupported_citation": ("unsupported citation", "引用不受支持"),
    "cited": ("cited", "已引用"),
    "not_cited": ("not cited", "未引用"),
    "supports": ("Supports: “{sentence}” (support {support:.2f}, {status})",
                 "支持：“{sentence}”（支持度 {support:.2f}，{status}）"),
    "open_source": ("Open source", "打开来源"),
    "full_text": ("Full text ({pmcid})", "全文（{pmcid}）"),
    "left_out": ("Left out: retracted records ({n})", "已排除：撤稿记录（{n}）"),
    "left_out_note": ("Retrieved but never cited: the record is retracted.",
                      "已检索到，但从不引用：该记录已撤稿。"),
    "plan": ("Plan: how the question was searched", "检索计划：问题是如何检索的"),
    "retrieved": ("Evidence retrieved ({n} passages)", "检索到的证据（{n} 个段落）"),
    "score": ("score", "得分"),
    "sources_say": (SOURCES_SAY_LABEL, "来源原文"),
    "review_notice": (REVIEW_NOTICE,
                      "仅供临床决策参考：据此采取任何措施之前，须由执业临床医师审核本回答及其来源。"),
    # feedback
    "feedback_saved": ("✅ Feedback saved. Thank you.", "✅ 反馈已保存，谢谢。"),
    "was_right": ("Was this answer right?", "这个回答正确吗？"),
    "rating": ("Rating", "评价"),
    "helpful": ("👍 Helpful", "👍 有帮助"),
    "not_helpful": ("👎 Not helpful", "👎 没有帮助"),
    "no_rating": ("No rating", "不评价"),
    "comment": ("Comment (optional)", "意见（可选）"),
    "correction": ("Corrected answer (optional)", "更正后的回答（可选）"),
    "send_feedback": ("Send feedback", "提交反馈"),
    # asking
    "ask": ("Ask a clinical question (English or Chinese)", "请输入临床问题（中文或英文）"),
    "searching": ("Searching the evidence and writing the answer…", "正在检索证据并撰写回答……"),
    "cannot_answer": ("evidex cannot answer yet: {error}", "evidex 暂时无法回答：{error}"),
    "not_answered": ("The question was not answered: {error}", "问题未能回答：{error}"),
    "went_wrong": ("Something went wrong while answering ({error}). The question was not "
                   "answered; try again, or tell your evidex administrator.",
                   "回答时出错（{error}）。问题未能回答；请重试，或联系 evidex 管理员。"),
    "settings_invalid": ("evidex settings are invalid: {error}", "evidex 设置无效：{error}"),
}  # fmt: skip

BADGES_ZH = {**DESIGNS_ZH, "other": "其他"}  # the digest's names; a badge says "other" short
STANCES_ZH = {"supports": "支持", "contradicts": "反对", "mixed": "不一致",
              "does_not_address": "未涉及"}  # fmt: skip


def t(key: str, lang: UiLang = "en", **values: object) -> str:
    """The interface text ``key`` in ``lang``, filled in.

    >>> t("references", "zh"), t("removed", "en", n=2)
    ('参考文献', 'Removed sentences (2): not supported by sources')
    """
    en, zh = TEXT[key]
    text = zh if lang == "zh" else en
    return text.format(**values) if values else text


def choose(
    preference: str | None,
    setting: str = "auto",
    last_question: str | None = None,
    accept_language: str | None = None,
) -> UiLang:
    """The language a user sees: their choice, else ``chat.language``; 'auto' is the language
    of their last question, else the browser's.

    >>> choose("zh"), choose(None, "en", "阿司匹林？"), choose("auto", "auto", "阿司匹林")
    ('zh', 'en', 'zh')
    >>> choose(None, "auto", None, "zh-CN,zh;q=0.9"), choose(None, "auto", "Aspirin?", "zh")
    ('zh', 'en')
    """
    for value in (preference, setting):
        if value in ("en", "zh"):
            return value  # type: ignore[return-value]
        if value not in (None, "", "auto"):
            break
    if last_question:
        return "zh" if detect(last_question) == "zh" else "en"
    first = (accept_language or "").split(",")[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"


class Preferences:
    """Each user's interface language, in a small JSON file (private, written atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("%s unreadable (%s): interface languages reset to the default", self.path,
                        type(exc).__name__)  # fmt: skip
            return {}
        return {str(k): str(v) for k, v in data.items() if v in CHOICES} if isinstance(
            data, dict) else {}  # fmt: skip

    def get(self, user: str) -> str | None:
        return self._read().get(user)

    def set(self, user: str, choice: str) -> None:
        if choice not in CHOICES:
            raise InputError(f"interface language must be one of {CHOICES}, not {choice!r}")
        with self._lock:
            data = self._read()
            data[user] = choice
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".prefs-")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, ensure_ascii=False, indent=1)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
