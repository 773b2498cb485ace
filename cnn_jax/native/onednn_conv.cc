// oneDNN's convolution kernels as XLA FFI handlers (see cnn_jax/native/onednn.py).
//
// Three handlers for float32 2-D convolutions of NHWC images with HWIO kernels, each with
// attributes `strides` (2 values) and `padding` (top, bottom, left, right):
//
//   cnn_jax_onednn_conv_forward          (x, w)  -> y
//   cnn_jax_onednn_conv_input_grad       (dy, w) -> dx
//   cnn_jax_onednn_conv_weight_grad      (x, dy) -> dw
//
// Images and gradients stay NHWC ("channels last" to oneDNN). The kernel, a few KB, is
// reordered into and out of the blocked layout that oneDNN's vectorized kernels choose.
// Primitives are built once per shape and reused. Calls run one at a time: XLA calls handlers
// from any thread of its pool, and with OpenMP every thread that calls oneDNN brings a team of
// its own, so calls side by side would put a multiple of the cores' threads to work.

#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace {

namespace ffi = xla::ffi;
using dnnl::memory;
using Images = ffi::Buffer<ffi::F32, 4>;
using Dims = ffi::Span<const int64_t>;

// The shapes of one convolution: x [n, h, w, c], kernel [kh, kw, c, o], y [n, oh, ow, o].
struct Shape {
  int64_t n, h, w, c, kh, kw, o, oh, ow;
  int64_t stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right;

  auto key() const {
    return std::make_tuple(n, h, w, c, kh, kw, o, oh, ow, stride_h, stride_w, pad_top,
                           pad_bottom, pad_left, pad_right);
  }
  bool consistent() const {
    const bool positive = n > 0 && h > 0 && w > 0 && c > 0 && kh > 0 && kw > 0 && o > 0 &&
                          oh > 0 && ow > 0 && stride_h > 0 && stride_w > 0;
    const bool padded = pad_top >= 0 && pad_bottom >= 0 && pad_left >= 0 && pad_right >= 0;
    return positive && padded && h + pad_top + pad_bottom >= kh && w + pad_left + pad_right >= kw &&
           oh == (h + pad_top + pad_bottom - kh) / stride_h + 1 &&
           ow == (w + pad_left + pad_right - kw) / stride_w + 1;
  }
};

// Both live as long as the process (never destroyed, so no order of destruction at exit).
dnnl::engine& Engine() {
  static auto* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

dnnl::stream& Stream() {
  static auto* stream = new dnnl::stream(Engine());
  return *stream;
}

// Every primitive is built with a scratchpad of its own, passed at each call. oneDNN's default
// keeps one scratchpad per thread, booked by the thread that builds a primitive: XLA calls the
// handlers from any thread of its pool, and a primitive built on one and run on another wrote
// through a null scratchpad (oneDNN 2.6 and 3.2, e.g. the gemm forward kernel of AlexNet's
// 11x11 stride-4 convolution).
dnnl::primitive_attr OwnScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// A primitive and the scratchpad it runs with.
class Primitive {
 public:
  Primitive() = default;
  template <typename Kind, typename PrimitiveDesc>
  static Primitive Of(const PrimitiveDesc& pd) {
    Primitive made;
    made.primitive_ = Kind(pd);
    made.scratchpad_ = memory(pd.scratchpad_desc(), Engine());
    return made;
  }

  void Execute(std::unordered_map<int, memory> args) {
    args[DNNL_ARG_SCRATCHPAD] = scratchpad_;
    primitive_.execute(Stream(), args);
  }

 private:
  dnnl::primitive primitive_;
  memory scratchpad_;
};

// The kernel in the layout one primitive works in: the caller's HWIO buffer itself where the
// layouts agree, else a scratch buffer and a reorder into it (read) or out of it (written).
class KernelLayout {
 public:
  KernelLayout(const memory::desc& hwio, const memory::desc& wanted, bool written) {
    if (hwio == wanted) return;
    scratch_ = memory(wanted, Engine());
    reorder_ = written ? Reorder(wanted, hwio) : Reorder(hwio, wanted);
  }

  // The kernel to read: `hwio` itself, or its copy in the primitive's layout.
  memory Read(memory& hwio) {
    if (!reorder_) return hwio;
    reorder_->Execute({{DNNL_ARG_FROM, hwio}, {DNNL_ARG_TO, scratch_}});
    return scratch_;
  }
  // Where the primitive writes the kernel; `Written` then copies it into `hwio`.
  memory Target(memory& hwio) { return reorder_ ? scratch_ : hwio; }
  void Written(memory& hwio) {
    if (reorder_) reorder_->Execute({{DNNL_ARG_FROM, scratch_}, {DNNL_ARG_TO, hwio}});
  }

 private:
  static std::unique_ptr<Primitive> Reorder(const memory::desc& from, const memory::desc& to) {
    return std::make_unique<Primitive>(Primitive::Of<dnnl::reorder>(
        dnnl::reorder::primitive_desc(Engine(), from, Engine(), to, OwnScratchpad())));
  }
  memory scratch_;
  std::unique_ptr<Primitive> reorder_;
};

// The three primitives of one convolution shape, each with the kernel in its layout.
struct Convolution {
  memory::desc images, kernel, outputs;  // NHWC, HWIO, NHWC
  Primitive forward, input_grad, weight_grad;
  std::unique_ptr<KernelLayout> forward_kernel, input_grad_kernel, weight_grad_kernel;

  explicit Convolution(const Shape& s) {
    using tag = memory::format_tag;
    const auto f32 = memory::data_type::f32;
    images = memory::desc({s.n, s.c, s.h, s.w}, f32, tag::nhwc);
    kernel = memory::desc({s.o, s.c, s.kh, s.kw}, f32, tag::hwio);
    outputs = memory::desc({s.n, s.o, s.oh, s.ow}, f32, tag::nhwc);
    const memory::desc any_kernel({s.o, s.c, s.kh, s.kw}, f32, tag::any);
    const memory::dims strides{s.stride_h, s.stride_w};
    const memory::dims pad_low{s.pad_top, s.pad_left}, pad_high{s.pad_bottom, s.pad_right};
    const auto direct = dnnl::algorithm::convolution_direct;
    const auto attr = OwnScratchpad();
#if DNNL_VERSION_MAJOR >= 3
    dnnl::convolution_forward::primitive_desc forward_pd(
        Engine(), dnnl::prop_kind::forward_training, direct, images, any_kernel, outputs,
        strides, pad_low, pad_high, attr);
    dnnl::convolution_backward_data::primitive_desc input_grad_pd(
        Engine(), direct, images, any_kernel, outputs, strides, pad_low, pad_high, forward_pd,
        attr);
    dnnl::convolution_backward_weights::primitive_desc weight_grad_pd(
        Engine(), direct, images, any_kernel, outputs, strides, pad_low, pad_high, forward_pd,
        attr);
#else
    dnnl::convolution_forward::primitive_desc forward_pd(
        {dnnl::prop_kind::forward_training, direct, images, any_kernel, outputs, strides,
         pad_low, pad_high},
        attr, Engine());
    dnnl::convolution_backward_data::primitive_desc input_grad_pd(
        {direct, images, any_kernel, outputs, strides, pad_low, pad_high}, attr, Engine(),
        forward_pd);
    dnnl::convolution_backward_weights::primitive_desc weight_grad_pd(
        {direct, images, any_kernel, outputs, strides, pad_low, pad_high}, attr, Engine(),
        forward_pd);
#endif
    forward = Primitive::Of<dnnl::convolution_forward>(forward_pd);
    input_grad = Primitive::Of<dnnl::convolution_backward_data>(input_grad_pd);
    weight_grad = Primitive::Of<dnnl::convolution_backward_weights>(weight_grad_pd);
    forward_kernel = std::make_unique<KernelLayout>(kernel, forward_pd.weights_desc(), false);
    input_grad_kernel = std::make_unique<KernelLayout>(kernel, input_grad_pd.weights_desc(), false);
    weight_grad_kernel =
        std::make_unique<KernelLayout>(kernel, weight_grad_pd.diff_weights_desc(), true);
  }
};

// Used under Run's lock only.
Convolution& Lookup(const Shape& shape) {
  static auto* cache = new std::map<decltype(shape.key()), std::unique_ptr<Convolution>>();
  auto& entry = (*cache)[shape.key()];
  if (!entry) entry = std::make_unique<Convolution>(shape);
  return *entry;
}

// Runs `body` with the cached convolution of these shapes, one call at a time; any error
// (inconsistent arguments, an exception from oneDNN) comes back as an FFI error.
template <typename Body>
ffi::Error Run(Dims x, Dims kernel, Dims y, Dims strides, Dims padding, Body body) {
  if (strides.size() != 2 || padding.size() != 4) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "oneDNN convolution: expected 2 strides and 4 paddings");
  }
  const Shape shape{x[0],       x[1],       x[2],       x[3],       kernel[0],
                    kernel[1],  kernel[3],  y[1],       y[2],       strides[0],
                    strides[1], padding[0], padding[1], padding[2], padding[3]};
  if (!shape.consistent() || kernel[2] != x[3] || y[0] != x[0] || y[3] != kernel[3]) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "oneDNN convolution: shapes, strides and padding do not agree");
  }
  // oneDNN's strided 1x1 kernels write past their buffers for some channel counts; callers
  // slice the input to stride 1 first (cnn_jax/models/cpu_conv.py).
  if (shape.kh == 1 && shape.kw == 1 && (shape.stride_h != 1 || shape.stride_w != 1)) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "oneDNN convolution: a strided 1x1 convolution must be sliced to stride 1");
  }
  static auto* one_at_a_time = new std::mutex();
  std::lock_guard<std::mutex> lock(*one_at_a_time);
  try {
    body(Lookup(shape));
    Stream().wait();
  } catch (const std::exception& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN convolution: ") + e.what());
  } catch (...) {
    return ffi::Error(ffi::ErrorCode::kInternal, "oneDNN convolution: unknown exception");
  }
  return ffi::Error::Success();
}

ffi::Error Forward(Images x, Images w, ffi::ResultBuffer<ffi::F32, 4> y, Dims strides,
                   Dims padding) {
  return Run(x.dimensions(), w.dimensions(), y->dimensions(), strides, padding, [&](Convolution& conv) {
    memory hwio(conv.kernel, Engine(), w.typed_data());
    conv.forward.Execute({{DNNL_ARG_SRC, memory(conv.images, Engine(), x.typed_data())},
                          {DNNL_ARG_WEIGHTS, conv.forward_kernel->Read(hwio)},
                          {DNNL_ARG_DST, memory(conv.outputs, Engine(), y->typed_data())}});
  });
}

ffi::Error InputGrad(Images dy, Images w, ffi::ResultBuffer<ffi::F32, 4> dx, Dims strides,
                     Dims padding) {
  return Run(dx->dimensions(), w.dimensions(), dy.dimensions(), strides, padding, [&](Convolution& conv) {
    memory hwio(conv.kernel, Engine(), w.typed_data());
    conv.input_grad.Execute({{DNNL_ARG_DIFF_DST, memory(conv.outputs, Engine(), dy.typed_data())},
                             {DNNL_ARG_WEIGHTS, conv.input_grad_kernel->Read(hwio)},
                             {DNNL_ARG_DIFF_SRC, memory(conv.images, Engine(), dx->typed_data())}});
  });
}

ffi::Error WeightGrad(Images x, Images dy, ffi::ResultBuffer<ffi::F32, 4> dw, Dims strides,
                      Dims padding) {
  return Run(x.dimensions(), dw->dimensions(), dy.dimensions(), strides, padding, [&](Convolution& conv) {
    memory hwio(conv.kernel, Engine(), dw->typed_data());
    conv.weight_grad.Execute({{DNNL_ARG_SRC, memory(conv.images, Engine(), x.typed_data())},
                              {DNNL_ARG_DIFF_DST, memory(conv.outputs, Engine(), dy.typed_data())},
                              {DNNL_ARG_DIFF_WEIGHTS, conv.weight_grad_kernel->Target(hwio)}});
    conv.weight_grad_kernel->Written(hwio);
  });
}

}  // namespace

#define CNN_JAX_BINDING                                                   \
  ffi::Ffi::Bind()                                                        \
      .Arg<Images>()                                                      \
      .Arg<Images>()                                                      \
      .Ret<ffi::Buffer<ffi::F32, 4>>()                                    \
      .Attr<Dims>("strides")                                              \
      .Attr<Dims>("padding")

XLA_FFI_DEFINE_HANDLER_SYMBOL(cnn_jax_onednn_conv_forward, Forward, CNN_JAX_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(cnn_jax_onednn_conv_input_grad, InputGrad, CNN_JAX_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(cnn_jax_onednn_conv_weight_grad, WeightGrad, CNN_JAX_BINDING);
