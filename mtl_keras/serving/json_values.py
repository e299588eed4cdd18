"""JSON values as TF Serving's REST API reads them (json_tensor.cc, with rapidjson).

Parsing (errors in rapidjson's words, trailing bytes ignored), the debug form
in which values appear in error messages (rapidjson's PrettyWriter: arrays on
one line, objects indented by 4, cut after 256 bytes), JSON type names,
``signature_name`` and ``{"b64": ...}`` bytes.
"""

import base64
import binascii
import json
import math

from mtl_keras.serving import validation

DEBUG_LIMIT = 256  # json_tensor.cc stops writing a value into a message past this many bytes
_TYPE_NAMES = {bool: "True", type(None): "Null", dict: "Object", list: "Array", str: "String"}


def json_type(value):
    if value is True:
        return "True"
    if value is False:
        return "False"
    return _TYPE_NAMES.get(type(value), "Number")


def _number(value):
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value).replace("e+", "e")
    return str(value)


def debug_string(value):
    """The value as rapidjson's PrettyWriter prints it in TF Serving's messages (arrays on one line,
    objects indented by 4), cut after the token that passes 256 bytes."""
    out, size = [], [0]

    def put(text):
        if size[0] >= DEBUG_LIMIT:
            return False
        out.append(text)
        size[0] += len(text)
        return True

    def write(item, depth):
        if isinstance(item, dict):
            if not item:
                return put("{}")
            put("{")
            for index, (key, member) in enumerate(item.items()):
                if not put(("," if index else "") + "\n" + "    " * (depth + 1) + json.dumps(key) + ": "):
                    return False
                write(member, depth + 1)
            return put("\n" + "    " * depth + "}")
        if isinstance(item, list):
            put("[")
            for index, member in enumerate(item):
                if index and not put(", "):
                    return False
                write(member, depth + 1)
            return put("]")
        if isinstance(item, str):
            return put(json.dumps(item))
        if item is None:
            return put("null")
        if isinstance(item, bool):
            return put("true" if item else "false")
        return put(_number(item))

    write(value, 0)
    return "".join(out)


def format_error(document, *words):
    return validation.invalid(f"JSON Value: {debug_string(document)} " + "".join(words))


_PARSE_ERRORS = (  # Python's json messages -> rapidjson's GetParseError_En
    ("Expecting value", "Invalid value."),
    ("Expecting property name", "Missing a name for object member."),
    ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
    ("Unterminated string", "Missing a closing quotation mark in string."),
    ("Invalid control character", "Invalid encoding in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
)


def parse(body):
    """The JSON object of a request body; errors as TF Serving words them. Trailing bytes are ignored,
    as rapidjson's kParseStopWhenDoneFlag does."""
    if not body:
        raise validation.invalid("JSON Parse error: The document is empty")
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        start = len(text) - len(text.lstrip())
        document, _ = json.JSONDecoder().raw_decode(text, start)
    except UnicodeDecodeError as error:
        raise validation.invalid(f"JSON Parse error: Invalid encoding in string. at offset: {error.start}") from None
    except json.JSONDecodeError as error:
        words = next((w for p, w in _PARSE_ERRORS if error.msg.startswith(p)), None)
        if words is None:
            words = "Missing a comma or ']' after an array element." if "delimiter" in error.msg else "Invalid value."
        raise validation.invalid(f"JSON Parse error: {words} at offset: {error.pos}") from None
    except RecursionError:
        raise validation.invalid("JSON Parse error: Invalid value. at offset: 0") from None
    if not isinstance(document, dict):
        raise format_error(document, "Is not object")
    return document


def signature_name(document):
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise validation.invalid(
            f"JSON Value: {debug_string(document)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


def is_base64(value):
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def decode_base64(value):
    if not is_base64(value):
        raise validation.invalid(f"JSON Value: {debug_string(value)} not formatted correctly for base64 data")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise validation.invalid("Unable to base64 decode") from None
