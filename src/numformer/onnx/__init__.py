"""Export a numformer model to ONNX, as ``torch.onnx.export`` does a PyTorch one.

``import numformer.onnx`` (as a ported program imports ``torch.onnx``), then
``numformer.onnx.export(model, args, "model.onnx", input_names=..., output_names=...,
dynamic_axes=...)``. The forward runs once per size under ``no_grad`` in eval mode, recording
the primitives it runs (``autograd.tracing``); each primitive becomes ONNX operators (``TABLE``
in ``numformer.onnx.mapping``); parameters and buffers become initializers under their
state-dict names. Dynamic axes (batch, sequence) stay dynamic: the forward is traced with each
dynamic axis at three sizes, and every size, slice bound or shape-derived array the forward
computed is checked to follow the inputs' shapes and computed from them in the graph
(``Shape``, ``Gather``, ``Range``), never baked in at the traced size. Whatever the graph could
not compute at another size is an error naming the primitive and the module, never a silently
different graph. A model that takes a shortcut on its inputs' values (``BertModel`` skips an
all-ones attention mask) checks ``numformer.autograd.is_tracing()`` to take the general path
when traced, and a graph input that the traced forward never reads is an error. ``onnx`` is
imported only here (the ``onnx`` extra); ``import numformer`` never
imports it.

Coverage (primitive of ``numformer.ops`` -> ONNX operators; opset 17 or later):

======================================  =====================================================
Add, Sub, Mul, Div, Neg, Pow            Add, Sub, Mul, Div, Neg, Pow
PowScalar                               Pow (the exponent a constant)
Exp, Log, Sqrt, Abs, Tanh, Sigmoid,     Exp, Log, Sqrt, Abs, Tanh, Sigmoid, Relu
Relu
Gelu                                    Gelu (opset 20+); before: Div, Erf, Add, Mul (exact,
                                        which ONNX Runtime fuses into one kernel) or Mul, Add,
                                        Tanh (tanh form)
Where, Clip, Cast                       Where, Clip, Cast
Copy, Fill                              Identity; Expand of the value to Shape
Sin, Cos, Maximum, Minimum              Sin, Cos, Max, Min
Log1p, Expm1                            Add then Log; Exp then Sub
Stepwise                                Floor, Ceil, Round, Sign; trunc: Sign, Abs, Floor, Mul
Cumsum                                  CumSum
Erf                                     Erf
Prod                                    ReduceProd
Einsum                                  Einsum (the equation's explicit form)
Gather                                  GatherElements
Scatter, ScatterAdd                     ScatterElements (reduction "add"); a source the
                                        index's shape only
SetItem                                 none: index assignment in a forward (build the value
                                        out of place to export it)
Sum, Mean, Max                          ReduceSum, ReduceMean, ReduceMax (integers: Cast first)
Var                                     ReduceMean, Sub, Mul, ReduceSum, Div; the count from
                                        Shape, Gather, ReduceProd
Reshape, Permute, BroadcastTo           Reshape, Transpose, Expand (sizes that follow the
                                        inputs from Shape and Gather)
GetItem                                 Slice, Gather, Unsqueeze (ints, slices, None, ...)
Index                                   Gather (one integer array, the ints beside it adjacent;
                                        no boolean masks), Slice, Unsqueeze
Cat, Stack                              Concat (Stack: Unsqueeze first)
MatMul                                  MatMul
Linear                                  Transpose (of the weight), MatMul, Add, Relu
Softmax                                 Softmax; ReduceMax, IsInf, Where (an all -inf row gives
                                        zeros, as numformer's)
LogSoftmax                              LogSoftmax
LayerNorm                               LayerNormalization (add & norm: Add first)
RMSNorm                                 Mul, ReduceMean, Add, Sqrt, Div, Mul
Silu, SwiGLU                            Sigmoid, Mul
Rotary                                  Slice, Neg, Concat, Mul, Add
ScaledDotProductAttention,              Mul (scale), Transpose, MatMul, Add or Where (masks),
BlockedAttention                        Range and LessOrEqual (causal), Softmax, MatMul; a row
                                        with no key gives zeros, as numformer's: Cast, ReduceMax,
                                        Equal, Where (boolean mask) or ReduceMax, IsInf, Where;
                                        need_weights: the Softmax as the second output; batch
                                        dims broadcast (enable_gqa's (N, Hkv, G, L, E) queries)
Embedding                               Gather
LSTMLayer                               LSTM (gates reordered by Split and Concat), Transpose,
                                        Squeeze; its cell states only at the last step
RNNLayer                                RNN
GRULayer                                GRU (gates reordered; linear_before_reset=1)
LeakyRelu, Hardsigmoid, Softsign        LeakyRelu, HardSigmoid, Softsign
Hardswish                               HardSwish
Elu                                     Elu, Selu or Celu
Softplus                                Mul, Softplus, Div, Greater, Where (beta, threshold)
Hardtanh                                Clip
LogSigmoid                              Neg, Softplus, Neg
Mish                                    Mish (opset 18+); before: Softplus, Tanh, Mul
Normalize                               ReduceL2 or ReduceL1 (else Abs, Pow, ReduceSum, Pow),
                                        Max, Div
Pad                                     Pad (constant, reflect, edge); circular: Slice and
                                        Concat
Conv2d                                  Conv
MaxPool2d                               MaxPool (no return_indices: ONNX's indices differ)
AvgPool2d                               AveragePool (no divisor_override)
PositionIds                             Shape, Gather, Range, Expand
Equal, NotEqual                         Equal (and Not)
MergeMasks                              Unsqueeze or Reshape, Range and LessOrEqual (causal),
                                        Or, Not; float masks: Where, Cast, Add
MSELoss                                 Sub, Mul, ReduceMean or ReduceSum
Dropout                                 none: random (export in eval mode)
CrossEntropy, NLLLoss, L1Loss,          none: a training loss
SmoothL1Loss, HuberLoss,
BinaryCrossEntropy,
BinaryCrossEntropyWithLogits, KLDiv
======================================  =====================================================

Models: every ``nn`` module and ``numformer.models`` model exports, except ``LSTMSeq2Seq``
(its encoder picks each row's last real state with a NumPy index on the ids; refused with an
error naming it). ``export_model_folder`` exports a demo GPT's model folder or a
sentence-transformers folder (``numformer export onnx MODEL_FOLDER OUT.onnx``); ``export_app``
an application's trained models, as its ``App.onnx_models`` gives them (``numformer app NAME
export``).
"""

from numformer.onnx.errors import OnnxExporterError, UnsupportedOperatorError
from numformer.onnx.exporter import export
from numformer.onnx.folders import Exported, export_app, export_model_folder

__all__ = ["export", "export_model_folder", "export_app", "Exported", "OnnxExporterError", "UnsupportedOperatorError"]
