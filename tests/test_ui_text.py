"""What a user typed, or put in the URL, comes back in warnings and errors as literal text, cut short: never as a
link, an image or formatting (st.warning and st.error render Markdown)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components.panels import plain

APP = str(Path(__file__).resolve().parent.parent / "app.py")
IMAGE = "![c](http://evil.example/pixel.png)"
LINK = "[Your session expired, click to log in](http://evil.example/phish)"
LONG_ID = "r" + "x" * 60_000


def lab(params: dict[str, str]) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("params", [{"activation": IMAGE}, {"run": IMAGE}, {"run": LINK},
                                    {"compare": "1", "b_init": IMAGE}, {"lr": LINK}])
def test_url_values_are_quoted_as_literal_text(params):
    (warning,) = lab(params).warning
    body = warning.value
    assert "](" not in body and "![" not in body  # every bracket escaped: no image, no link
    assert "\\!\\[c\\]\\(http" in body or "\\[Your session expired" in body
    assert len(body) < 400


def test_a_60_kb_run_id_is_cut_to_80_characters():
    (warning,) = lab({"run": LONG_ID}).warning
    assert "x" * 70 in warning.value and "x" * 81 not in warning.value
    assert len(warning.value) < 300  # was 60,117 characters


def test_a_typed_value_is_shown_literally_at_its_field():
    at = lab({})
    at.text_input(key="w_hidden_sizes").set_value(IMAGE).run()
    errors = [e.value for e in at.error]
    assert errors and all("](" not in e for e in errors)
    assert any("hidden\\_sizes" in e for e in errors)


def test_plain_escapes_every_markdown_trigger_and_keeps_the_words():
    text = "**b** _i_ `c` :red[x] :material/home: $x$ <b> www.a.com http://a.b # h\n- item | t |"
    out = plain(text)
    for ch in "*_`:[]$<>.#-|/":
        assert all(out[i - 1] == "\\" for i, c in enumerate(out) if c == ch)
    assert "\n" not in out
    assert out.replace("\\", "").replace("\u200b", "") == " ".join(text.split())
    assert "http\u200b" in out and "www\u200b" in out  # the page's own linking of bare addresses finds none


def test_the_page_is_told_where_the_server_is_under_any_base_path():
    from components.page_base import script

    assert b'window.location.origin + "/"' in script("")
    assert b'window.location.origin + "/lab/"' in script("/lab/")
