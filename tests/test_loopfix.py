from crispmoss.loopfix import collapse_loops


def test_clean_text_is_unchanged():
    for s in ["and so my fellow americans ask not what your country can do for you",
              "no no no, that is not what I meant", "他说：我们走吧。", ""]:
        assert collapse_loops(s) == s


def test_word_and_phrase_loops_are_cut_to_the_cap():
    assert collapse_loops("the the the the the the end") == "the the the end"
    assert collapse_loops("go on " * 20 + "stop") == "go on go on go on stop"


def test_cjk_character_loops():
    assert collapse_loops("好的" * 30 + "。") == "好的好的好的。"


def test_option_reaches_the_transcript(tiny_transcribe_gguf_f16):
    """The tiny random model loops; the option shortens the text, the generated tokens stay raw."""
    import crispmoss

    m = crispmoss.Model(tiny_transcribe_gguf_f16)
    s = m.session(crispmoss.load_audio(_jfk()))
    raw = s.transcribe(max_new_tokens=24)
    fixed = s.transcribe(max_new_tokens=24, collapse_loops=True)
    assert fixed.tokens == raw.tokens
    assert fixed.text == collapse_loops(raw.text)


def _jfk():
    from pathlib import Path

    return str(Path(__file__).resolve().parents[2] / "shared" / "audio" / "jfk.wav")


def test_cjk_is_one_definition_for_loopfix_and_pass_joining():
    # Long audio joins pass texts without a space between CJK characters; loopfix reads a mostly-CJK text by
    # characters. Both ask crispmoss.results.is_cjk: CJK punctuation and fullwidth forms (once CJK only for
    # joining) and supplementary-plane ideographs (once CJK only for loopfix) count for both.
    from crispmoss.results import join_texts

    for ch in "。、「ＡＢ１好" + "\U00020000\U0002a6d6":
        assert join_texts(["x" + ch, ch + "y"]) == "x" + ch + ch + "y"
        assert collapse_loops(ch * 10) == ch * 3
    assert collapse_loops("好。" * 6) == "好。" * 3  # half of it punctuation: still read by characters
    assert join_texts(["a", "好"]) == "a 好" and collapse_loops("the " * 6 + "end") == "the " * 3 + "end"
