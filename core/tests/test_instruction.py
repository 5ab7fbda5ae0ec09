"""Tests of the instruction parser: examples, errors with their carets, and property tests (hypothesis)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ofasys.instruction as instruction_module
from ofasys.errors import InstructionError
from ofasys.instruction import Group, Instruction, Marker, Slot, Text, parse, parse_templates

# ------------------------------------------------------------------------------------------------ helpers


def caret(err: InstructionError) -> tuple[int, int]:
    """(column, width) of the caret line in the rendered message, relative to the reprinted instruction."""
    lines = str(err).splitlines()
    carets = [line for line in lines if line.strip() and set(line.strip()) == {"^"}]
    assert len(carets) == 1, str(err)
    line = carets[0]
    column = line.index("^") - 2  # the instruction and the caret line are both indented by two spaces
    return column, line.count("^")


def error_of(source, match: str) -> InstructionError:
    with pytest.raises(InstructionError, match=match) as info:
        parse(source)
    return info.value


def slot(type_: str, column: str | None = None, **attrs) -> Slot:
    return Slot(type_, column, tuple(attrs.items()))


# ------------------------------------------------------------------------------------------------ examples


def test_caption():
    ins = parse("[IMAGE:img] what does the image describe? -> [TEXT:cap]")
    assert ins.encoder == (slot("IMAGE", "img"), Text("what does the image describe?"))
    assert ins.decoder == (slot("TEXT", "cap"),)
    assert ins.columns == {"img", "cap"}
    assert ins.source == "[IMAGE:img] what does the image describe? -> [TEXT:cap]"
    assert ins.source[slice(*ins.arrow_span)] == "->"
    assert Instruction.parse(ins.source) == ins


def test_entailment_with_flag():
    ins = parse("can text1 [TEXT:sent1] imply text2 [TEXT:sent2]? -> [TEXT:label,closed_set]")
    assert ins.encoder == (Text("can text1"), slot("TEXT", "sent1"), Text("imply text2"), slot("TEXT", "sent2"),
                           Text("?"))
    (label,) = ins.decoder
    assert label.attrs == (("closed_set", True),)
    assert label.attr("closed_set") is True
    assert label.attr("missing", 3) == 3


def test_quotes_in_text_around_slot():
    ins = parse('[IMAGE:img] which region does the text " [TEXT:cap] " describe? -> [BOX:region]')
    assert ins.encoder == (slot("IMAGE", "img"), Text('which region does the text "'), slot("TEXT", "cap"),
                           Text('" describe?'))
    assert ins.decoder == (slot("BOX", "region"),)


def test_group():
    ins = parse("[IMAGE:img] detect the objects in the image. -> ([BOX:boxes] [TEXT:labels])*")
    (group,) = ins.decoder
    assert isinstance(group, Group)
    assert group.elements == (slot("BOX", "boxes"), slot("TEXT", "labels"))
    assert group.slots() == (slot("BOX", "boxes"), slot("TEXT", "labels"))
    assert ins.source[slice(*group.span)] == "([BOX:boxes] [TEXT:labels])*"
    refs = ins.slots()
    assert [(r.side, r.slot.column, r.group) for r in refs] == [
        ("encoder", "img", None), ("decoder", "boxes", group), ("decoder", "labels", group)]
    side, s, g = refs[1]  # plain triples
    assert (side, s, g) == ("decoder", slot("BOX", "boxes"), group)


def test_slot_without_column_with_attrs():
    ins = parse("what is the complete image? caption: [TEXT:text] -> "
                "[IMAGE,preprocess=image_vqgan,adaptor=image_vqgan]")
    (image,) = ins.decoder
    assert image == Slot("IMAGE", None, (("preprocess", "image_vqgan"), ("adaptor", "image_vqgan")))
    assert ins.columns == {"text"}
    assert ins.encoder == (Text("what is the complete image? caption:"), slot("TEXT", "text"))


def test_audio_and_motion():
    ins = parse("[AUDIO:wav] what is the text corresponding to the voice? -> [TEXT:text]")
    assert ins.encoder[0] == slot("AUDIO", "wav")
    ins = parse("what is the motion? [TEXT:text] -> [MOTION:motion]")
    assert ins.decoder == (slot("MOTION", "motion"),)


def test_struct():
    ins = parse('" [TEXT:src] " ; structured knowledge: " [STRUCT:database,max_length=876] " . '
                "generating sql code. -> [TEXT:tgt]")
    assert ins.encoder == (Text('"'), slot("TEXT", "src"), Text('" ; structured knowledge: "'),
                           Slot("STRUCT", "database", (("max_length", "876"),)),
                           Text('" . generating sql code.'))


def test_markers():
    ins = parse("<BOS> [TEXT:a] <EOS> -> [TEXT:b]")
    assert ins.encoder == (Marker("BOS"), slot("TEXT", "a"), Marker("EOS"))
    assert ins.encoder[0].span == (0, 5)
    # only the exact upper-case markers; an escaped '<' is text
    assert parse("a<BOS>b -> c").encoder == (Text("a"), Marker("BOS"), Text("b"))
    assert parse("<bos> \\<EOS> <BOSS> -> c").encoder == (Text("<bos> <EOS> <BOSS>"),)


def test_empty_sides():
    ins = parse("-> [TEXT:x]")
    assert ins.encoder == ()
    assert ins.decoder == (slot("TEXT", "x"),)
    assert parse("[TEXT:x] ->").decoder == ()
    assert parse("->") == Instruction((), ())
    assert str(parse("   ->  ")) == "->"


def test_quoted_and_spaced_attrs():
    ins = parse('[IMAGE:img,path="/data/my images/x.png",max_length=12,uncased] -> [TEXT:y]')
    assert ins.encoder == (Slot("IMAGE", "img", (("path", "/data/my images/x.png"), ("max_length", "12"),
                                                 ("uncased", True))),)
    spaced = parse('[ IMAGE : img , path = "a, [b] \\"c\\" \\\\d" ,  max_length=12 , uncased ] -> [TEXT:y]')
    assert spaced.encoder[0].attrs == (("path", 'a, [b] "c" \\d'), ("max_length", "12"), ("uncased", True))
    assert parse('[TEXT:x,a="",b=c=d,c=->] -> y').encoder[0].attrs == (("a", ""), ("b", "c=d"), ("c", "->"))
    assert parse("[TEXT:a.b_c] -> y").columns == {"a.b_c"}
    assert parse("[TEXT:x,a=True] -> y").encoder[0].attr("a") == "True"  # a value, not a flag


def test_attr_spans():
    src = '[TEXT:uncased, uncased , path = "a b,c" ,k=v] -> y'
    (s,) = parse(src).encoder
    assert src[slice(*s.attr_span("uncased"))] == "uncased"
    assert s.attr_span("uncased")[0] == src.index(" uncased") + 1
    assert src[slice(*s.attr_span("path"))] == 'path = "a b,c"'
    assert src[slice(*s.attr_span("k"))] == "k=v"
    assert s.attr_span("nope") == s.span
    assert Slot("TEXT", "x", (("k", "v"),)).attr_span("k") == (0, 0)


def test_text_normalisation_and_escapes():
    src = "  what\n\tis   \\[this\\]\\( \\) \\\\ \\<BOS> a\\->b  ?  -> \r\n [TEXT:y]\n"
    ins = parse(src)
    assert ins.encoder == (Text("what is [this]( ) \\ <BOS> a->b ?"),)
    assert ins.encoder[0].span == (2, src.index("?") + 1)
    # '<', '-', '*' and '>' are text unless they form a marker, an arrow or close a group
    assert parse("a < b - c > d * e -> f").encoder == (Text("a < b - c > d * e"),)
    assert parse("[TEXT:x]?[TEXT:y]! -> z").encoder == (slot("TEXT", "x"), Text("?"), slot("TEXT", "y"), Text("!"))
    # control characters are whitespace
    assert parse("a\x00\x1fb -> c").encoder == (Text("a b"),)


def test_spans_point_into_source():
    src = "  [IMAGE:img]  x  ([BOX:b] <EOS>)* -> [TEXT:t]"
    ins = parse(src)
    image, x, group = ins.encoder
    assert src[slice(*image.span)] == "[IMAGE:img]"
    assert src[slice(*x.span)] == "x"
    assert src[slice(*group.span)] == "([BOX:b] <EOS>)*"
    assert src[slice(*group.elements[1].span)] == "<EOS>"
    assert src[slice(*ins.decoder[0].span)] == "[TEXT:t]"


def test_equality_ignores_spans_and_source():
    assert parse("a   [TEXT:x] -> b") == parse("a [TEXT:x]->b")
    assert parse("a [TEXT:x] -> b") != parse("a [TEXT:y] -> b")


@pytest.mark.parametrize("source, canonical", [
    ("a   [TEXT:x]->b", "a [TEXT:x] -> b"),
    ("[ TEXT : x , f , k = v ] ->", "[TEXT:x,f,k=v] ->"),
    ('[TEXT,k="plain"] -> y', "[TEXT,k=plain] -> y"),
    ('[TEXT,k="a b",e="",q="\\"",s="\\\\",c=","] -> y', '[TEXT,k="a b",e="",q="\\"",s="\\\\",c=","] -> y'),
    ("\\[x\\] \\(y\\) \\\\ -> z", "\\[x\\] \\(y\\) \\\\ -> z"),
    ("\\<BOS> < BOS \\<EOS> -> z", "\\<BOS> < BOS \\<EOS> -> z"),
    ("a\\->b a\\-b a-b -> z", "a\\->b a-b a-b -> z"),
    ("(a [TEXT:x] <BOS>)*b -> c", "(a [TEXT:x] <BOS>)* b -> c"),
    ("([TEXT:x])** -> c", "([TEXT:x])* * -> c"),
])
def test_canonical_form(source, canonical):
    ins = parse(source)
    assert str(ins) == canonical
    assert parse(canonical) == ins
    assert str(parse(canonical)) == canonical


# ------------------------------------------------------------------------------------------------ errors


def test_missing_arrow():
    err = error_of("[IMAGE:img] caption", "missing '->'")
    assert caret(err) == (len("[IMAGE:img] caption"), 1)  # at the end


def test_two_arrows():
    src = "[TEXT:a] -> [TEXT:b] -> [TEXT:c]"
    err = error_of(src, "more than one '->'")
    assert caret(err) == (src.rindex("->"), 2)


def test_unclosed_bracket():
    err = error_of("a [TEXT:x -> [TEXT:y]", r"'\[' is never closed")
    assert caret(err) == (2, 1)
    err = error_of("a -> [TEXT:x", r"'\[' is never closed")
    assert caret(err) == (5, 1)
    err = error_of("a [b c -> [TEXT:y]", r"'\[' is never closed")  # not a lower-case-type complaint
    assert caret(err) == (2, 1)


def test_stray_closing_bracket():
    err = error_of("a ] b -> [TEXT:y]", r"unbalanced bracket: '\]'")
    assert caret(err) == (2, 1)
    assert "\\]" in err.hint


def test_unclosed_group():
    err = error_of("-> ([BOX:b] [TEXT:t]", r"unbalanced group: '\(' is never closed")
    assert caret(err) == (3, 1)
    err = error_of("([BOX:b] -> [TEXT:t])*", "'->' inside a group")
    assert caret(err) == (9, 2)


def test_group_close_without_star():
    err = error_of("-> ([BOX:b] [TEXT:t]) x", r"'\)' must be followed by '\*'")
    assert caret(err) == (20, 1)


def test_group_close_without_open():
    err = error_of("-> [BOX:b] [TEXT:t])*", r"'\)' without a matching '\('")
    assert caret(err) == (19, 2)


def test_nested_group():
    err = error_of("-> ([BOX:b] ([TEXT:t])*)*", "nested group")
    assert caret(err) == (12, 1)


@pytest.mark.parametrize("src, message", [("-> ()*", "empty group"), ("-> (some text <EOS>)*", "without a slot")])
def test_group_without_slot(src, message):
    err = error_of(src, message)
    assert caret(err) == (3, len(src) - 3)


def test_duplicate_attribute():
    src = "[TEXT:x,max_length=3,uncased, max_length=4] -> y"
    err = error_of(src, "duplicate attribute 'max_length'")
    assert caret(err) == (src.rindex("max_length"), len("max_length"))


@pytest.mark.parametrize("name", ["1abc", "max-length", "a.b", "é"])
def test_bad_attribute_name(name):
    src = f"[TEXT:x,{name}=3] -> y"
    err = error_of(src, "invalid attribute name")
    assert caret(err) == (8, len(name))


def test_empty_attribute():
    err = error_of("[TEXT:x,,y] -> z", "empty attribute")
    assert caret(err) == (7, 1)
    err = error_of("[TEXT:x, ] -> z", "empty attribute")
    assert caret(err) == (7, 1)


def test_missing_value():
    err = error_of("[TEXT:x,k= ] -> z", "missing value after '='")
    assert caret(err) == (11, 1)


def test_unterminated_quote():
    src = '[IMAGE:img,path="/data/x.png] -> [TEXT:y]'
    err = error_of(src, "unterminated quoted value")
    assert caret(err) == (src.index('"'), 1)
    err = error_of('[IMAGE:img,path="abc\\', "unterminated quoted value")
    assert caret(err) == (16, 1)


def test_bad_escape_in_quotes():
    err = error_of('[IMAGE:img,path="C:\\data"] -> y', "invalid escape")
    assert caret(err) == (19, 2)


def test_lowercase_type():
    err = error_of("[text:x] -> [TEXT:y]", "slot type 'text' must be upper case")
    assert caret(err) == (1, 4)
    assert "TEXT" in err.hint
    err = error_of("-> [Image]", "must be upper case")
    assert caret(err) == (4, 5)


@pytest.mark.parametrize("src, message, column", [
    ("[] -> y", "expected a slot type", 1),
    ("[1X:x] -> y", "invalid slot type '1X'", 1),
    ("[TEXT:] -> y", "expected a column name", 6),
    ("[TEXT:1x] -> y", "invalid column name '1x'", 6),
    ("[TEXT:x:y] -> z", "unexpected ':'", 7),
    ('[TEXT:x "q"] -> z', "unexpected '\"'", 8),
])
def test_other_slot_errors(src, message, column):
    err = error_of(src, message)
    assert caret(err)[0] == column


def test_bad_text_escapes():
    err = error_of("a \\x -> y", r"invalid escape '\\x'")
    assert caret(err) == (2, 2)
    err = error_of("a -> y\\", "lone backslash")
    assert caret(err) == (6, 1)


@pytest.mark.parametrize("value", [None, 3, b"[TEXT:x] -> y", ["a -> b"]])
def test_non_string_input(value):
    with pytest.raises(InstructionError, match="must be a string"):
        parse(value)


def test_error_message_stays_on_one_line():
    err = error_of("a\nb\n", "missing '->'")
    assert "  a b " in str(err).splitlines()
    assert caret(err) == (4, 1)


def test_error_is_value_error():
    with pytest.raises(ValueError):
        parse("no arrow")


# ------------------------------------------------------------------------------------------------ templates


def test_parse_templates_string():
    src = "[IMAGE:img] what is it? -> [TEXT:cap] |||[IMAGE:img] describe -> [TEXT:cap]"
    first, second = parse_templates(src)
    assert first.encoder[1] == Text("what is it?")
    assert second.encoder[1] == Text("describe")
    assert second.source == "[IMAGE:img] describe -> [TEXT:cap]"
    assert second.source[slice(*second.encoder[0].span)] == "[IMAGE:img]"
    assert parse_templates("a -> b") == [parse("a -> b")]


def test_parse_templates_list():
    assert parse_templates(["a -> b", "c ||| d -> e"]) == [parse("a -> b"), parse("c ||| d -> e")]
    assert parse_templates(("a -> b",)) == [parse("a -> b")]


def test_parse_templates_error_points_into_whole_string():
    src = "a -> [TEXT:x] ||| b [TEXT:y -> c"
    with pytest.raises(InstructionError, match=r"'\[' is never closed") as info:
        parse_templates(src)
    assert caret(info.value) == (src.index("[TEXT:y"), 1)
    src = "a -> b ||| c d"
    with pytest.raises(InstructionError, match="missing '->'") as info:
        parse_templates(src)
    assert caret(info.value) == (len(src), 1)


@pytest.mark.parametrize("value, message", [
    ([], "no instruction templates"),
    ("", "empty template"),
    ("a -> b |||   ||| c -> d", "empty template"),
    ("a -> b |||", "empty template"),
    (["a -> b", "  "], "template 1 is empty"),
    (["a -> b", 3], "template 1 must be a string"),
    (None, "must be a string or a list"),
])
def test_parse_templates_errors(value, message):
    with pytest.raises(InstructionError, match=message):
        parse_templates(value)


def test_empty_template_caret():
    with pytest.raises(InstructionError) as info:
        parse_templates("a -> b |||   ||| c -> d")
    assert caret(info.value) == (10, 3)


# ------------------------------------------------------------------------------------------------ module hygiene


def test_module_does_not_import_torch():
    tree = ast.parse(Path(instruction_module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "torch" not in imported


def test_public_names():
    for name in instruction_module.__all__:
        assert hasattr(instruction_module, name)


# ------------------------------------------------------------------------------------------------ properties

GRAMMAR_PIECES = ["[", "]", "(", ")", ")*", "*", "-", ">", "->", "<", "<BOS>", "<EOS>", ",", ":", "=", '"', " ",
                  "\\", "\\[", "\\\"", "\n", "|||", "TEXT", "IMAGE", "text", "x", "a.b", "1", "max_length", "é",
                  "[TEXT:x]", "[IMAGE:img,", "k=v", 'k="a b"', "flag"]

grammar_strings = st.lists(st.sampled_from(GRAMMAR_PIECES), max_size=25).map("".join)
grammar_chars = st.text(alphabet=st.sampled_from(list('[]()*-><,:=" \\\tABTEXab_1.')), max_size=40)
any_strings = st.one_of(st.text(max_size=60), grammar_strings, grammar_chars)


def check_round_trip(ins: Instruction) -> None:
    canonical = str(ins)
    again = parse(canonical)
    assert again == ins, canonical
    assert str(again) == canonical


@settings(max_examples=400, deadline=None)
@given(any_strings)
def test_parse_raises_only_instruction_error(s):
    try:
        ins = parse(s)
    except InstructionError as err:
        assert 0 <= err.start <= len(s) and err.start < err.end
        return
    check_round_trip(ins)  # whatever happens to parse, round-trips


@settings(max_examples=200, deadline=None)
@given(any_strings)
def test_parse_templates_raises_only_instruction_error(s):
    try:
        parse_templates(s)
    except InstructionError:
        pass


def _merge_texts(elements: list) -> tuple:
    """Adjacent texts merge in the parser, so the generated ASTs merge them too."""
    out: list = []
    for element in elements:
        if out and isinstance(element, Text) and isinstance(out[-1], Text):
            out[-1] = Text(out[-1].text + " " + element.text)
        else:
            out.append(element)
    return tuple(out)


# text: anything but control characters (those count as whitespace, which str.split() does not all know),
# biased toward the characters that need escaping
text_chars = st.one_of(st.characters(exclude_categories=("Cc", "Cs")),
                       st.sampled_from(list("[]()\\<->*\"|:,= \t\n") + ["<BOS>", "<EOS>", "->", ")*"]))
texts = (st.lists(text_chars, min_size=1, max_size=12).map(lambda cs: " ".join("".join(cs).split()))
         .filter(bool).map(Text))
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
values = st.one_of(st.just(True), st.text(max_size=8), st.sampled_from(["", "a b", '"', "\\", "->", "x=y", "[]"]))
slots = st.builds(
    Slot,
    st.from_regex(r"[A-Z][A-Z0-9_]{0,5}", fullmatch=True),
    st.none() | st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,6}", fullmatch=True),
    st.lists(st.tuples(identifiers, values), max_size=3, unique_by=lambda kv: kv[0]).map(tuple),
)
markers = st.sampled_from(["BOS", "EOS"]).map(Marker)
flat = st.one_of(slots, texts, markers)
groups = st.builds(lambda before, s, after: Group(_merge_texts([*before, s, *after])),
                   st.lists(flat, max_size=2), slots, st.lists(flat, max_size=2))
sides = st.lists(st.one_of(flat, groups), max_size=5).map(_merge_texts)
instructions = st.builds(Instruction, sides, sides)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instructions)
def test_generated_instructions_round_trip(ins):
    check_round_trip(ins)
    parsed = parse(str(ins))
    # spans point at the slots in the canonical source
    for ref in parsed.slots():
        assert parse(parsed.source[slice(*ref.slot.span)] + " ->").encoder == (ref.slot,)
    for side in (parsed.encoder, parsed.decoder):
        for element in side:
            if isinstance(element, (Group, Marker)):
                assert parse(parsed.source[slice(*element.span)] + " ->").encoder == (element,)
