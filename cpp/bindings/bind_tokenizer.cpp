// Python surface of the tokenizer: crispmoss._core.Tokenizer and crispmoss._core.Utf8Stream.
#include <pybind11/stl.h>

#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bindings/bind.h"
#include "errors.h"
#include "text/tokenizer.h"
#include "text/unicode_tables.h"

namespace py = pybind11;

namespace cm::bind {
namespace {

// Bytes of a str (UTF-8) or bytes-like argument. The view stays valid while `obj` lives (str caches its UTF-8
// form, bytes are immutable); other buffers and str with lone surrogates are copied.
struct TextArg {
    std::string storage;
    std::string_view view;

    explicit TextArg(py::handle obj) {
        PyObject* o = obj.ptr();
        if (PyUnicode_Check(o)) {
            Py_ssize_t size = 0;
            if (const char* data = PyUnicode_AsUTF8AndSize(o, &size)) {
                view = std::string_view(data, static_cast<size_t>(size));
                return;
            }
            // Lone surrogates: keep their 3-byte forms, which the tokenizer treats as invalid bytes.
            PyErr_Clear();
            py::object b = py::reinterpret_steal<py::object>(PyUnicode_AsEncodedString(o, "utf-8", "surrogatepass"));
            if (!b) throw py::error_already_set();
            storage.assign(PyBytes_AS_STRING(b.ptr()), static_cast<size_t>(PyBytes_GET_SIZE(b.ptr())));
        } else if (PyBytes_Check(o)) {
            view = std::string_view(PyBytes_AS_STRING(o), static_cast<size_t>(PyBytes_GET_SIZE(o)));
            return;
        } else if (PyObject_CheckBuffer(o)) {
            py::buffer_info info = py::reinterpret_borrow<py::buffer>(obj).request();
            storage.assign(static_cast<const char*>(info.ptr), static_cast<size_t>(info.size * info.itemsize));
        } else {
            throw py::type_error("expected str or bytes, got " + std::string(Py_TYPE(o)->tp_name));
        }
        view = storage;
    }
};

int32_t to_id(PyObject* item) {
    PyObject* idx = PyNumber_Index(item);
    if (!idx) {
        PyErr_Clear();
        throw py::type_error("token ids must be integers, got " + std::string(Py_TYPE(item)->tp_name));
    }
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(idx, &overflow);
    Py_DECREF(idx);
    if (overflow || v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
        throw InputError("token id out of range");
    return static_cast<int32_t>(v);
}

std::vector<int32_t> to_ids(py::handle obj) {
    std::vector<int32_t> ids;
    if (PyUnicode_Check(obj.ptr()) || PyBytes_Check(obj.ptr()))
        throw py::type_error("token ids must be a sequence of integers, not str/bytes");
    if (PyList_Check(obj.ptr())) {
        const Py_ssize_t n = PyList_GET_SIZE(obj.ptr());
        ids.reserve(static_cast<size_t>(n));
        for (Py_ssize_t i = 0; i < n; ++i) ids.push_back(to_id(PyList_GET_ITEM(obj.ptr(), i)));
        return ids;
    }
    for (py::handle item : py::reinterpret_borrow<py::iterable>(obj)) ids.push_back(to_id(item.ptr()));
    return ids;
}

py::list to_list(const std::vector<int32_t>& ids) {
    py::list out(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
        PyObject* v = PyLong_FromLong(ids[i]);
        if (!v) throw py::error_already_set();
        PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), v);
    }
    return out;
}

py::str to_str_replace(const std::string& s) {
    PyObject* u = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
    if (!u) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(u);
}

// The bytes of a Python sequence of ids, decoded without the GIL.
std::string decode_ids(const Tokenizer& t, py::handle ids, bool skip_special) {
    const std::vector<int32_t> v = to_ids(ids);
    py::gil_scoped_release nogil;
    return t.decode(v, skip_special);
}

}  // namespace

void bind_tokenizer(py::module_& m) {
    m.def("unicode_version", [] { return std::string(unicode::kVersion); },
          "The Unicode version of the pre-tokenizer's letter / number / white-space tables (that of the tokenizers and "
          "tiktoken releases the official Qwen tokenizer runs with; see scripts/gen_unicode_tables.py).");
    py::class_<Tokenizer>(m, "Tokenizer", R"doc(
Qwen byte-level BPE tokenizer (token for token equal to tiktoken with the Qwen pattern on valid UTF-8).

Tokenizer(tokens, merges): tokens[id] as in the GGUF's tokenizer.ggml.tokens (GPT-2 byte-unicode strings for
BPE tokens, literal text for added tokens, "[PAD<id>]" fillers), merges as "left right" in rank order.
Invalid UTF-8 in bytes input is accepted (each stray byte is its own "other" unit), so every byte string
round-trips through tokenize / detokenize_bytes.
)doc")
        .def(py::init([](std::vector<std::string> tokens, std::vector<std::string> merges, size_t n_bpe) {
                 py::gil_scoped_release nogil;
                 return std::make_unique<Tokenizer>(std::move(tokens), std::move(merges), n_bpe);
             }),
             py::arg("tokens"), py::arg("merges"), py::arg("n_bpe") = 0)
        .def(
            "tokenize",
            [](const Tokenizer& t, py::handle text, bool special, bool nfc) {
                py::object normalized;
                if (nfc && PyUnicode_Check(text.ptr())) {
                    normalized = py::module_::import("unicodedata").attr("normalize")("NFC", text);
                    text = normalized;
                }
                TextArg arg(text);
                std::vector<int32_t> ids;
                {
                    py::gil_scoped_release nogil;
                    ids = t.encode(arg.view, special);
                }
                return to_list(ids);
            },
            py::arg("text"), py::arg("special") = true, py::arg("nfc") = false,
            "Token ids of str or bytes; special=True turns added-token text such as <|im_end|> into its id.\n"
            "nfc=True first applies Unicode NFC to a str, as the Hugging Face Qwen2 tokenizer does (tiktoken does\n"
            "not); bytes are taken as they are.")
        .def(
            "detokenize",
            [](const Tokenizer& t, py::handle ids, bool skip_special) {
                return to_str_replace(decode_ids(t, ids, skip_special));
            },
            py::arg("ids"), py::arg("skip_special") = false,
            "Text of ids; bytes that are not valid UTF-8 become U+FFFD.")
        .def(
            "detokenize_bytes",
            [](const Tokenizer& t, py::handle ids, bool skip_special) {
                return py::bytes(decode_ids(t, ids, skip_special));
            },
            py::arg("ids"), py::arg("skip_special") = false, "Exact bytes of ids.")
        .def(
            "token_bytes", [](const Tokenizer& t, int32_t id) { return py::bytes(t.token_bytes(id)); },
            py::arg("id"), "Exact bytes of one token (feed these to a Utf8Stream when streaming).")
        .def(
            "token_to_id",
            [](const Tokenizer& t, std::string_view piece) -> py::object {
                const int32_t id = t.token_to_id(piece);
                if (id < 0) return py::none();
                return py::int_(id);
            },
            py::arg("piece"), "Id of a token string in its stored form ('Ġthe', '<|im_end|>'), or None.")
        .def("id_to_piece", &Tokenizer::id_to_piece, py::arg("id"), "Stored string of a token id.")
        .def("is_special", &Tokenizer::is_special, py::arg("id"), "True for added tokens such as <|im_end|>.")
        .def("set_special", &Tokenizer::set_special, py::arg("id"), py::arg("text"),
             "Force id to be the added token `text`; not allowed for BPE tokens.")
        .def(
            "pretokenize",
            [](const Tokenizer& t, py::handle text) {
                TextArg arg(text);
                py::list out;
                for (std::string_view piece : t.pretokenize(arg.view)) out.append(py::bytes(piece.data(), piece.size()));
                return out;
            },
            py::arg("text"), "Pre-tokens of the text as bytes (no added-token splitting); for debugging.")
        .def_property_readonly("n_vocab", &Tokenizer::n_vocab)
        .def_property_readonly("n_merges", &Tokenizer::n_merges)
        .def("__len__", &Tokenizer::n_vocab);

    py::class_<Utf8Stream>(m, "Utf8Stream", R"doc(
Incremental UTF-8 decoder for streamed token bytes: push() returns only complete characters and holds back a
sequence that may still be completed; ill-formed bytes become U+FFFD. All push() results + flush() equal
data.decode("utf-8", "replace") of the concatenated input.
)doc")
        .def(py::init<>())
        .def(
            "push",
            [](Utf8Stream& s, py::handle data) {
                if (PyUnicode_Check(data.ptr())) throw py::type_error("Utf8Stream.push expects bytes, not str");
                TextArg arg(data);
                return to_str_replace(s.push(arg.view));
            },
            py::arg("data"))
        .def("flush", [](Utf8Stream& s) { return to_str_replace(s.flush()); })
        .def_property_readonly("pending", &Utf8Stream::pending, "Bytes held back, waiting for the rest of a character.");
}

}  // namespace cm::bind
