"""The status page's shell: self-contained, and its policy allows nothing else."""

import base64
import hashlib
import re

from gateway.status_page import CONTENT_SECURITY_POLICY, STATUS_PAGE


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_policy_allows_exactly_the_inline_script_and_style():
    (script,) = re.findall(r"<script>(.*?)</script>", STATUS_PAGE, re.DOTALL)
    (style,) = re.findall(r"<style>(.*?)</style>", STATUS_PAGE, re.DOTALL)
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == sha256(script)
    assert directives["style-src"] == sha256(style)
    assert directives["connect-src"] == "'self'"
    assert directives["form-action"] == "'none'"


def test_no_external_asset_and_no_markup_from_data():
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", STATUS_PAGE)
    assert "http://" not in STATUS_PAGE and "https://" not in STATUS_PAGE
    # Values reach the DOM through textContent only.
    assert "innerHTML" not in STATUS_PAGE and "outerHTML" not in STATUS_PAGE
    assert "insertAdjacentHTML" not in STATUS_PAGE and "document.write" not in STATUS_PAGE
    # The token input has no name, so no form submission could ever carry it.
    token_input = re.search(r"<input[^>]*id=\"token\"[^>]*>", STATUS_PAGE).group(0)
    assert "name=" not in token_input and 'type="password"' in token_input
