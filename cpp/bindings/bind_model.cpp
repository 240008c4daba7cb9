// Model and Session: the compute-heavy calls release the GIL; callbacks take it back only to run Python.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <map>
#include <mutex>
#include <thread>

#include "bindings/bind.h"
#include "engine.h"
#include "errors.h"
#include "models/audio_lm.h"
#include "session.h"
#include "text/tokenizer.h"

namespace py = pybind11;

namespace cm::bind {
namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

py::array_t<float> to_numpy(const HostTensor& t) {
    std::vector<py::ssize_t> shape(t.ne.rbegin(), t.ne.rend());  // ggml ne0 is the fastest axis
    py::array_t<float> a(shape);
    std::copy(t.data.begin(), t.data.end(), a.mutable_data());
    return a;
}

py::object kv_value(gguf_context* g, int64_t k) {
    switch (gguf_get_kv_type(g, k)) {
        case GGUF_TYPE_UINT8: return py::int_(gguf_get_val_u8(g, k));
        case GGUF_TYPE_INT8: return py::int_(gguf_get_val_i8(g, k));
        case GGUF_TYPE_UINT16: return py::int_(gguf_get_val_u16(g, k));
        case GGUF_TYPE_INT16: return py::int_(gguf_get_val_i16(g, k));
        case GGUF_TYPE_UINT32: return py::int_(gguf_get_val_u32(g, k));
        case GGUF_TYPE_INT32: return py::int_(gguf_get_val_i32(g, k));
        case GGUF_TYPE_UINT64: return py::int_(gguf_get_val_u64(g, k));
        case GGUF_TYPE_INT64: return py::int_(gguf_get_val_i64(g, k));
        case GGUF_TYPE_FLOAT32: return py::float_(gguf_get_val_f32(g, k));
        case GGUF_TYPE_FLOAT64: return py::float_(gguf_get_val_f64(g, k));
        case GGUF_TYPE_BOOL: return py::bool_(gguf_get_val_bool(g, k));
        case GGUF_TYPE_STRING: return py::str(gguf_get_val_str(g, k));
        case GGUF_TYPE_ARRAY: {
            py::dict d;
            d["array_of"] = py::str(gguf_type_name(gguf_get_arr_type(g, k)));
            d["length"] = py::int_(gguf_get_arr_n(g, k));
            return std::move(d);
        }
        default: return py::none();
    }
}

// Everything `crispmoss info` shows, read through the validating loader.
py::dict describe(const ModelFile& f) {
    py::dict info;
    info["path"] = f.path();
    info["architecture"] = f.arch();
    info["file_size"] = f.file_size();
    py::dict kv;
    gguf_context* g = f.gguf();
    for (int64_t k = 0; k < gguf_get_n_kv(g); ++k) kv[py::str(gguf_get_key(g, k))] = kv_value(g, k);
    info["metadata"] = kv;
    py::list tensors;
    for (ggml_tensor* t : f.tensors()) {
        std::vector<int64_t> ne;
        for (int i = 0; i < ggml_n_dims(t); ++i) ne.push_back(t->ne[i]);
        tensors.append(py::make_tuple(ggml_get_name(t), ggml_type_name(t->type), ne, ggml_nbytes(t)));
    }
    info["tensors"] = tensors;
    return info;
}

// A weight dequantized to float32, numpy shape = reversed ggml ne (PyTorch order).
py::array_t<float> tensor_data(const ModelFile& f, const std::string& name) {
    ggml_tensor* t = f.find(name);
    if (!t) f.fail("missing tensor '" + name + "'");
    std::vector<py::ssize_t> shape;
    for (int i = ggml_n_dims(t) - 1; i >= 0; --i) shape.push_back(t->ne[i]);
    py::array_t<float> a(shape);
    const auto* traits = ggml_get_type_traits(t->type);
    const int64_t n = ggml_nelements(t);
    // Offloaded weights live in device memory: fetch a host copy first.
    std::vector<uint8_t> staged;
    const void* src = t->data;
    if (t->buffer && !ggml_backend_buffer_is_host(t->buffer)) {
        staged.resize(ggml_nbytes(t));
        ggml_backend_tensor_get(t, staged.data(), 0, staged.size());
        src = staged.data();
    }
    if (t->type == GGML_TYPE_F32) {
        std::memcpy(a.mutable_data(), src, n * sizeof(float));
    } else if (traits && traits->to_float) {
        traits->to_float(src, a.mutable_data(), n);
    } else {
        f.fail(std::string("cannot dequantize type ") + ggml_type_name(t->type));
    }
    return a;
}

ggml_type kv_type_from(const std::string& s) {
    if (s == "f16") return GGML_TYPE_F16;
    if (s == "f32") return GGML_TYPE_F32;
    throw InputError("kv_type must be 'f16' or 'f32', not '" + s + "'");
}

py::dict timings_dict(const Timings& t) {
    py::dict d;
    d["mel_ms"] = t.mel_ms;
    d["encode_ms"] = t.encode_ms;
    d["prefill_ms"] = t.prefill_ms;
    d["decode_ms"] = t.decode_ms;
    d["n_prompt"] = t.n_prompt;
    d["n_prefilled"] = t.n_prefilled;
    d["n_generated"] = t.n_generated;
    return d;
}

// Text arguments as UTF-8: a str that cannot be encoded (a lone surrogate) is an InputError, not a TypeError.
std::string utf8_arg(const py::handle& obj, const char* what) {
    if (obj.is_none()) return std::string();
    if (!py::isinstance<py::str>(obj)) {
        throw InputError(std::string(what) + " must be a string, got " + std::string(Py_TYPE(obj.ptr())->tp_name));
    }
    Py_ssize_t n = 0;
    const char* data = PyUnicode_AsUTF8AndSize(obj.ptr(), &n);
    if (!data) {
        PyErr_Clear();
        throw InputError(std::string(what) + " is not valid Unicode text (it holds a lone surrogate)");
    }
    return std::string(data, static_cast<size_t>(n));
}

// hotwords: None or a list/tuple of str (a bare str would be split into characters: refused).
std::vector<std::string> hotwords_arg(const py::object& hotwords) {
    std::vector<std::string> out;
    if (hotwords.is_none()) return out;
    if (!py::isinstance<py::list>(hotwords) && !py::isinstance<py::tuple>(hotwords)) {
        throw InputError("hotwords must be a list of strings, got " + std::string(Py_TYPE(hotwords.ptr())->tp_name));
    }
    for (const py::handle& w : hotwords) out.push_back(utf8_arg(w, "a hotword"));
    return out;
}

PromptRequest request(const py::object& instruction, bool timestamps, const py::object& language, bool time_markers,
                      const py::object& system, const py::object& hotwords) {
    PromptRequest r;
    r.instruction = utf8_arg(instruction, "the prompt");
    r.timestamps = timestamps;
    r.language = utf8_arg(language, "language");
    r.time_markers = time_markers;
    r.system = utf8_arg(system, "the system prompt");
    r.hotwords = hotwords_arg(hotwords);
    return r;
}

py::dict mel_dict(const MelSpec& m) {
    py::dict d;
    d["sample_rate"] = m.sample_rate;
    d["n_fft"] = m.n_fft;
    d["hop"] = m.hop;
    d["n_mel"] = m.n_mel;
    d["window_samples"] = m.window_samples;
    return d;
}

py::dict spec_dict(const ModelSpec& s) {
    py::dict d;
    d["arch"] = s.arch;
    d["name"] = s.name;
    d["accepts_instructions"] = s.accepts_instructions;
    d["default_instruction"] = s.default_instruction;
    d["system_prompt"] = s.system_prompt;
    d["timestamps"] = s.timestamps;
    d["timed_output"] = s.timed_output;
    d["max_new_tokens"] = s.max_new_tokens;
    d["pass_seconds"] = s.pass_seconds;
    d["keep_prefixes"] = s.keep_prefixes;
    d["keep_names"] = s.keep_names;
    d["hotwords"] = s.hotwords;
    return d;
}

const ModelSpec& spec_of(const std::string& arch) {
    const ModelSpec* s = find_model_spec(arch);
    if (!s) throw InputError("unknown architecture '" + arch + "'");
    return *s;
}

// A loaded model and its engines (one per thread count: each runs its own worker and compute buffers; a Python
// Model uses one).
// close() drops both: the weights are freed once the last session using them is gone; any later use of this
// object raises ModelError.
struct PyModel {
    std::shared_ptr<const AudioLM> lm_;
    std::shared_ptr<std::mutex> mu = std::make_shared<std::mutex>();
    std::shared_ptr<std::map<int, std::shared_ptr<Engine>>> engines =
        std::make_shared<std::map<int, std::shared_ptr<Engine>>>();

    std::shared_ptr<const AudioLM> model() const {
        std::lock_guard<std::mutex> lk(*mu);
        if (!lm_) throw ModelError("the model is closed");
        return lm_;
    }
    void close() {
        std::map<int, std::shared_ptr<Engine>> gone;
        std::shared_ptr<const AudioLM> lm;
        {
            std::lock_guard<std::mutex> lk(*mu);
            gone.swap(*engines);
            lm.swap(lm_);
        }
        // Engines stop their workers as they are destroyed here (without the lock), unless a session holds them.
    }

    // The engine for n_threads (0: all cores), made with `opts` on first use; later options must agree.
    std::shared_ptr<Engine> engine(int n_threads, const EngineOptions* opts = nullptr) const {
        if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
        std::shared_ptr<const AudioLM> lm = model();
        std::lock_guard<std::mutex> lk(*mu);
        auto it = engines->find(n_threads);
        if (it != engines->end()) {
            const EngineOptions& have = it->second->options();
            if (opts && (opts->max_batch != have.max_batch || opts->prefill_chunk != have.prefill_chunk)) {
                throw InputError("this model already runs an engine with " + std::to_string(n_threads) +
                                 " threads and other batch settings");
            }
            return it->second;
        }
        auto e = std::make_shared<Engine>(lm, n_threads, opts ? *opts : EngineOptions());
        (*engines)[n_threads] = e;
        return e;
    }
};

py::dict stats_dict(const Engine::Stats& st) {
    py::dict d;
    d["active"] = st.active;
    d["waiting"] = st.waiting;
    d["jobs"] = st.jobs;
    d["steps"] = st.steps;
    d["step_rows"] = st.step_rows;
    d["max_step_rows"] = st.max_step_rows;
    return d;
}

}  // namespace

void bind_model(py::module_& m) {
    m.def("inspect", [](const std::string& path) { return describe(ModelFile(path)); }, py::arg("path"),
          "Validate a GGUF file's header and tensor table and describe it (no model-specific checks).");
    m.def(
        "models",
        []() {
            py::list out;
            for (const ModelSpec* s : model_specs()) out.append(spec_dict(*s));
            return out;
        },
        "The registered architectures: what each model declares (cpp/models/<model>.cpp).");
    m.def(
        "language_name", [](const py::object& language) { return language_name(utf8_arg(language, "language")); },
        py::arg("language"), "The English name of a language code (\"de\") or name; InputError if it is not one.");
    m.def(
        "transcription_instruction",
        [](const std::string& arch, const py::object& language, bool timestamps) {
            const ModelSpec& s = spec_of(arch);
            PromptRequest r;
            r.language = utf8_arg(language, "language");
            r.timestamps = timestamps;
            if (r.timestamps && !s.timestamps) {
                throw InputError(s.name + " writes no timestamps; use a " +
                                 model_names([](const ModelSpec& x) { return x.timestamps; }) +
                                 " model for timestamps=True");
            }
            return s.transcription_instruction(r.language.empty() ? std::string() : language_name(r.language),
                                               r.timestamps);
        },
        py::arg("arch"), py::arg("language") = py::none(), py::arg("timestamps") = false,
        "The instruction a transcription request sends (\"\" = the model's official default); InputError for a "
        "language or timestamps the model cannot take.");

    m.def(
        "check_generate",
        [](int max_new_tokens, float temperature, int top_k, float top_p, float min_p, float repetition_penalty,
           double timeout) {
            GenerateParams gp;
            gp.max_new_tokens = max_new_tokens;
            gp.sampling = SamplingParams{temperature, top_k, top_p, min_p, repetition_penalty, 0};
            gp.timeout_s = timeout;
            gp.validate();
        },
        py::kw_only(), py::arg("max_new_tokens") = 0, py::arg("temperature") = 0.0f, py::arg("top_k") = 0,
        py::arg("top_p") = 1.0f, py::arg("min_p") = 0.0f, py::arg("repetition_penalty") = 1.0f,
        py::arg("timeout") = 0.0,
        "InputError for generation options out of range: the check Session.generate runs, made before any work.");

    auto load = [](const std::string& path, const std::string& backend, int device, int n_gpu_layers,
                   const std::string& head_type, bool host_copy) {
        py::gil_scoped_release nogil;
        LoadOptions o;
        o.backend = backend;
        o.device = device;
        o.n_gpu_layers = n_gpu_layers;
        o.head_type = head_type;
        if (host_copy) o.test_offload_buft = ggml_backend_cpu_buffer_type();
        return PyModel{std::shared_ptr<const AudioLM>(AudioLM::load(path, o))};
    };
    py::class_<PyModel> model(m, "Model");
    model
        .def(py::init([load](const std::string& path, const std::string& backend, int device, int n_gpu_layers,
                             const std::string& head_type) {
                 return load(path, backend, device, n_gpu_layers, head_type, false);
             }),
             py::arg("path"), py::kw_only(), py::arg("backend") = "auto", py::arg("device") = 0,
             py::arg("n_gpu_layers") = -1, py::arg("head_type") = "")
        .def("close", &PyModel::close, py::call_guard<py::gil_scoped_release>(),
             "Drops the model (freed once its sessions are gone); later use raises ModelError.")
        .def_property_readonly("closed", [](const PyModel& s) {
            std::lock_guard<std::mutex> lk(*s.mu);
            return !s.lm_;
        })
        .def_property_readonly("placement",
                               [](const PyModel& s) {
                                   const Placement& p = s.model()->placement();
                                   py::dict d;
                                   d["backend"] = p.backend;
                                   d["device"] = p.device ? std::string(ggml_backend_dev_name(p.device)) : std::string("CPU");
                                   d["description"] = p.device ? std::string(ggml_backend_dev_description(p.device)) : std::string();
                                   d["n_layer"] = p.n_layer;
                                   d["n_gpu_layers"] = p.n_gpu_layers;
                                   d["full_offload"] = p.full;
                                   d["device_bytes"] = p.device_bytes;
                                   d["amx_bytes"] = p.amx_bytes;
                                   d["head_screen_bytes"] = p.head_screen_bytes;
                                   d["amx_prefill_weights"] = p.amx_prefill_weights;
                                   d["notice"] = p.notice;
                                   return d;
                               })
        .def_property_readonly("arch", [](const PyModel& s) { return s.model()->arch(); })
        .def_property_readonly("spec", [](const PyModel& s) { return spec_dict(s.model()->spec()); },
                               "What the model's architecture declares (see _core.models()).")
        .def_property_readonly("mel", [](const PyModel& s) { return mel_dict(s.model()->mel_spec()); },
                               "The model's mel front end: sample_rate, n_fft, hop, n_mel.")
        .def_property_readonly("path", [](const PyModel& s) { return s.model()->file().path(); })
        .def_property_readonly("n_vocab", [](const PyModel& s) { return s.model()->lm().cfg.n_vocab; })
        .def_property_readonly("n_ctx_train", [](const PyModel& s) { return s.model()->lm().cfg.n_ctx_train; })
        .def_property_readonly("accepts_instructions", [](const PyModel& s) { return s.model()->spec().accepts_instructions; })
        .def("n_audio_tokens", [](const PyModel& s, int n_frames) { return s.model()->n_audio_tokens(n_frames); },
             py::arg("n_frames"), "Audio rows the encoder yields for n_frames mel frames.")
        .def("n_audio_tokens_for", [](const PyModel& s, size_t n_samples) { return s.model()->n_audio_tokens_for(n_samples); },
             py::arg("n_samples"), "Audio rows of a clip of n_samples samples (nothing is run).")
        .def(
            "prompt_ids",
            [](const PyModel& s, size_t n_samples, const py::object& instruction, bool timestamps,
               const py::object& language, bool time_markers, const py::object& system, const py::object& hotwords) {
                auto lm = s.model();
                const PromptRequest r = request(instruction, timestamps, language, time_markers, system, hotwords);
                if (n_samples < static_cast<size_t>(lm->mel_spec().hop)) {
                    throw AudioError("audio too short for a mel frame: " + std::to_string(n_samples) + " samples");
                }
                lm->check_audio_fits(n_samples);
                return lm->build_prompt(lm->n_audio_tokens_for(n_samples), r).ids;
            },
            py::arg("n_samples"), py::kw_only(), py::arg("instruction") = "", py::arg("timestamps") = false,
            py::arg("language") = "", py::arg("time_markers") = true, py::arg("system") = "",
            py::arg("hotwords") = py::none(),
            "The prompt's ids for a clip of n_samples samples (audio rows as the placeholder id), without encoding.")
        .def(
            "kv_bytes_per_position",
            [](const PyModel& s, const std::string& kv_type) {
                const Qwen3Config& c = s.model()->lm().cfg;
                return size_t(c.n_layer) * 2 * size_t(c.n_head_kv) * size_t(c.head_dim) *
                       ggml_type_size(kv_type_from(kv_type));
            },
            py::arg("kv_type") = "f16", "KV-cache bytes per prompt or generated position.")
        .def_property_readonly("n_embd", [](const PyModel& s) { return s.model()->lm().cfg.n_embd; })
        .def("describe", [](const PyModel& s) { return describe(s.model()->file()); })
        .def("tensor_data", [](const PyModel& s, const std::string& name) { return tensor_data(s.model()->file(), name); })
        .def("tokenize",
             [](const PyModel& s, const py::object& text, bool special) {
                 const std::string bytes = py::isinstance<py::bytes>(text) ? std::string(text.cast<py::bytes>())
                                                                          : utf8_arg(text, "text");
                 auto lm = s.model();
                 py::gil_scoped_release nogil;
                 return lm->tokenizer().encode(bytes, special);
             },
             py::arg("text"), py::arg("special") = true)
        .def("detokenize_bytes",
             [](const PyModel& s, const std::vector<int32_t>& ids) { return py::bytes(s.model()->tokenizer().decode(ids)); },
             py::arg("ids"))
        .def("detokenize",
             [](const PyModel& s, const std::vector<int32_t>& ids) {
                 const std::string b = s.model()->tokenizer().decode(ids);
                 return py::reinterpret_steal<py::str>(PyUnicode_DecodeUTF8(b.data(), b.size(), "replace"));
             },
             py::arg("ids"))
        .def("is_special", [](const PyModel& s, int32_t id) { return s.model()->tokenizer().is_special(id); })
        .def(
            "engine",
            [](const PyModel& s, int n_threads, int max_batch, int prefill_chunk) {
                EngineOptions o;
                o.max_batch = max_batch;
                o.prefill_chunk = prefill_chunk;
                py::gil_scoped_release nogil;
                s.engine(n_threads, &o);
                return py::none();
            },
            py::arg("n_threads") = 0, py::kw_only(), py::arg("max_batch") = 16, py::arg("prefill_chunk") = 128,
            "Starts the engine for n_threads with these settings (sessions made with that thread count use it).")
        .def(
            "engine_stats",
            [](const PyModel& s, int n_threads) { return stats_dict(s.engine(n_threads)->stats()); },
            py::arg("n_threads") = 0, "Slots in use, sequences and encoder passes waiting, decode steps run.");
    // Tests without a GPU: load with the weights a device would get copied into host memory instead, so the
    // placement and copy path runs on any machine. Not part of Model's signature.
    m.def(
        "_load_with_host_copy",
        [load](const std::string& path, int n_gpu_layers) { return load(path, "cpu", 0, n_gpu_layers, "", true); },
        py::arg("path"), py::arg("n_gpu_layers") = -1);

    py::class_<Session>(m, "Session")
        .def(py::init([](const PyModel& model, int n_threads, const std::string& kv_type, bool mel_bf16) {
                 auto s = std::make_unique<Session>(model.model(), model.engine(n_threads), kv_type_from(kv_type));
                 s->set_mel_bf16(mel_bf16);
                 return s;
             }),
             py::arg("model"), py::kw_only(), py::arg("n_threads") = 0, py::arg("kv_type") = "f16",
             py::arg("mel_bf16") = true)
        .def("set_audio",
             [](Session& s, FloatArray audio) {
                 if (audio.ndim() != 1) throw AudioError("audio must be a 1-D float32 array of 16 kHz samples");
                 const float* p = audio.data();
                 const size_t n = static_cast<size_t>(audio.shape(0));
                 py::gil_scoped_release nogil;
                 s.set_audio(p, n);
             },
             py::arg("audio"))
        .def_property_readonly("n_audio", &Session::n_audio)
        .def_property_readonly("duration", &Session::duration)
        .def_property_readonly("has_audio", &Session::has_audio)
        .def_property_readonly("n_threads", &Session::n_threads)
        .def("audio_timings", [](Session& s) { return timings_dict(s.audio_timings()); })
        .def("prompt_ids",
             [](Session& s, const py::object& instruction, bool timestamps, const py::object& language,
                bool time_markers, const py::object& system, const py::object& hotwords) {
                 return s.prompt(request(instruction, timestamps, language, time_markers, system, hotwords)).ids;
             },
             py::kw_only(), py::arg("instruction") = "", py::arg("timestamps") = false, py::arg("language") = "",
             py::arg("time_markers") = true, py::arg("system") = "", py::arg("hotwords") = py::none())
        .def("generate",
             [](Session& s, const py::object& instruction, bool timestamps, const py::object& language,
                bool time_markers, const py::object& system, const py::object& hotwords, int max_new_tokens,
                float temperature, int top_k, float top_p, float min_p, float repetition_penalty, uint64_t seed,
                double timeout, py::object on_piece, py::object should_stop) {
                 const PromptRequest req = request(instruction, timestamps, language, time_markers, system, hotwords);
                 GenerateParams gp;
                 gp.max_new_tokens = max_new_tokens;
                 gp.sampling = SamplingParams{temperature, top_k, top_p, min_p, repetition_penalty, seed};
                 gp.timeout_s = timeout;
                 // Python errors raised in the callback (KeyboardInterrupt included) stop generation and
                 // propagate once the GIL is back; the session stays usable.
                 std::unique_ptr<py::error_already_set> pending;
                 PieceCallback cb = [&](const std::string& piece) {
                     py::gil_scoped_acquire gil;
                     try {
                         if (PyErr_CheckSignals() != 0) throw py::error_already_set();
                         if (on_piece.is_none() || piece.empty()) return true;
                         py::object r = on_piece(py::reinterpret_steal<py::str>(
                             PyUnicode_DecodeUTF8(piece.data(), piece.size(), "replace")));
                         return r.is_none() || r.cast<bool>();
                     } catch (py::error_already_set& e) {
                         pending = std::make_unique<py::error_already_set>(std::move(e));
                         return false;
                     }
                 };
                 // Ctrl-C is seen while the request waits for a slot or its prefill runs, not only between tokens.
                 // `should_stop` (a Python callable) is asked at every step too, also while the model emits no
                 // text and while the request waits for a slot or its prefill runs.
                 PollCallback poll = [&]() {
                     py::gil_scoped_acquire gil;
                     if (pending) return false;
                     try {
                         if (PyErr_CheckSignals() != 0) throw py::error_already_set();
                         return should_stop.is_none() || !should_stop().cast<bool>();
                     } catch (py::error_already_set& e) {
                         pending = std::make_unique<py::error_already_set>(std::move(e));
                         return false;
                     }
                 };
                 GenerateResult r;
                 {
                     py::gil_scoped_release nogil;
                     r = s.generate(req, gp, cb, poll);
                 }
                 if (pending) throw std::move(*pending);
                 py::dict d;
                 d["tokens"] = r.tokens;
                 d["text"] = py::bytes(r.text);
                 d["stop_reason"] = r.stop_reason;
                 d["timings"] = timings_dict(r.timings);
                 return d;
             },
             py::kw_only(), py::arg("instruction") = "", py::arg("timestamps") = false, py::arg("language") = "",
             py::arg("time_markers") = true, py::arg("system") = "", py::arg("hotwords") = py::none(),
             py::arg("max_new_tokens") = 512,
             py::arg("temperature") = 0.0f, py::arg("top_k") = 0, py::arg("top_p") = 1.0f, py::arg("min_p") = 0.0f,
             py::arg("repetition_penalty") = 1.0f, py::arg("seed") = 0, py::arg("timeout") = 0.0,
             py::arg("on_piece") = py::none(), py::arg("should_stop") = py::none(),
             "Runs one request (keyword arguments only). instruction: \"\" transcribes (with timestamps / a language "
             "hint / hotwords where the model takes them); system: the system turn (\"\" = the model's default). Returns "
             "tokens, text (UTF-8 bytes), stop_reason and timings.")
        .def("enable_dumps", [](Session& s, bool on) { s.dumps().on = on; })
        .def("dumps", [](Session& s) {
            py::dict d;
            for (const auto& [name, t] : s.dumps().tensors) d[py::str(name)] = to_numpy(t);
            return d;
        });
}

}  // namespace cm::bind
