"""The plain-text part derived from HTML."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from postsale.render.text import html_to_text, split_footer


def test_links_read_as_text_then_url():
    text = html_to_text('<p>Read the <a href="https://x.example/care">care guide</a> first.</p>')
    assert text == "Read the care guide (https://x.example/care) first.\n"


def test_link_whose_text_is_its_url_is_not_repeated():
    assert html_to_text('<a href="https://x.example/a">https://x.example/a</a>') == "https://x.example/a\n"
    assert html_to_text('<a href="https://x.example/a">x.example/a</a>') == "x.example/a\n"
    assert html_to_text('<a href="mailto:care@x.example">write to us</a>') == "write to us (care@x.example)\n"
    assert html_to_text('<a href="https://x.example/i"><img src="i.png"></a>') == "https://x.example/i\n"


def test_no_markdown_noise_and_entities_decoded():
    text = html_to_text("<h1>Hello</h1><p><b>Bold</b> &amp; <i>calm</i> &ldquo;quote&rdquo;</p>")
    assert text == "Hello\n\nBold & calm \u201cquote\u201d\n"


def test_lists_breaks_and_paragraphs():
    html = "<p>Line one<br>line two</p>\n<ul>\n<li>a</li>\n<li>b</li>\n</ul><p>end</p>"
    assert html_to_text(html) == "Line one\nline two\n\n- a\n- b\n\nend\n"


def test_head_style_and_hidden_elements_are_dropped():
    html = ('<html><head><title>T</title><style>p{}</style></head><body>'
            '<div style="display: none">preheader</div><span hidden>h</span><p>Body</p></body></html>')
    assert html_to_text(html) == "Body\n"


def test_footer_follows_a_signature_line():
    html = '<p>Message</p><table><tr><td class="footer"><p>Address</p></td></tr></table>'
    text = html_to_text(html)
    assert text == "Message\n\n-- \nAddress\n"
    assert split_footer(text) == ("Message\n\n", "Address\n")
    assert split_footer("no footer\n") == ("no footer\n", "")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(" \t\n\r\f\v\xa0\u2028ab&;<>é"), max_size=30))
def test_collapsed_is_the_converter_collapsing_spaces(value):
    from postsale.render.text import SPACES
    from postsale.render.text_program import collapsed
    assert collapsed(value) == SPACES.sub(" ", value)
