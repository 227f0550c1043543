/* frontend.h: readers that turn a model description (YAML written by hand, or ONNX exported
 * from PyTorch) into an IR forward graph: INPUT "images" f32 [B,C,H,W] -> ... -> output
 * "logits" f32 [B,num_classes], weights as WEIGHT leaves (IR_NODE_TRAINABLE) named as timm
 * names them, every node carrying the source location it came from.
 *
 * Sections follow the files that implement them:
 *   load.c    fe_load_model: picks the reader by file extension
 *   yaml.c    the YAML model format (libyaml document API), -D overrides, validation
 *   yaml_depth.c  the nesting pre-scan that keeps deep YAML away from libyaml
 *   layers.c  builders that compose IR for the DeiT layers, shared by YAML and ONNX so that
 *             both give identical graphs
 *   onnx.c    the ONNX reader (built only with DEITC_HAVE_ONNX, like all onnx*.c): entry
 *             points, the value table, the walk over the graph; its private header
 *             onnx_internal.h lists what its parts share:
 *     onnx_tensor.c    initializer/tensor decoding, external data, finiteness, folding
 *     onnx_ops.c       the per-op importers
 *     onnx_patterns.c  IR builders: LayerNorm/GELU recovery, transposes folded into MATMUL
 *   onnx_scan.c  the wire-format pass before unpacking: nesting and memory limits
 *   onnx_names.c   timm's weight names and [out,in] layout for an imported ViT/DeiT
 *   onnx_export.c  the way back: the original ONNX model with trained weights
 *
 * Errors: every function that can fail returns -1 (or a negative node id) and leaves a message
 * naming what and where ("models/x.yaml:12:7: ...") in err (or g->error for the builders).
 */
#ifndef DEITC_FRONTEND_H
#define DEITC_FRONTEND_H

#include "ir/ir.h"

/* One `-D name=value` override of a YAML hyperparameter (timm's names: img_size ...). */
typedef struct {
    const char *name;
    const char *value;
} fe_define;

/* ---- load.c ----------------------------------------------------------------------------- */

/* Reads MODEL (.yaml/.yml or .onnx) into a new forward graph at *out (free with
 * ir_graph_free). batch <= 0 means the model's default (1). Fills (*out)->info.
 * 0 on success; else -1 with a message in err and *out == NULL. */
int fe_load_model(const char *path, const fe_define *defines, int ndefines, int64_t batch,
                  ir_graph **out, char *err, size_t errsize);

/* ---- yaml.c ----------------------------------------------------------------------------- */

/* Same contract as fe_load_model, for a YAML file. */
int fe_yaml_load(const char *path, const fe_define *defines, int ndefines, int64_t batch,
                 ir_graph **out, char *err, size_t errsize);
/* Same, from text in memory (fuzzing, tests); `path` only names the source in messages and
 * node locations. The text need not be NUL-terminated. */
int fe_yaml_load_string(const char *text, size_t len, const char *path, const fe_define *defines,
                        int ndefines, int64_t batch, ir_graph **out, char *err, size_t errsize);

/* ---- yaml_depth.c ----------------------------------------------------------------------- */

/* Nesting (flow and block collections inside one another) that YAML text may have: a model
 * needs under 70 (32 nested layer lists, two levels each), and libyaml's cost per token grows
 * with the flow depth. */
#define FE_YAML_MAX_DEPTH 128
/* 0 when text nests at most FE_YAML_MAX_DEPTH deep, else -1 with "path:line:col: ..." in err.
 * Linear in len; anything malformed is left for libyaml to report (0). */
int fe_yaml_check_depth(const char *text, size_t len, const char *path, char *err, size_t errsize);

/* ---- layers.c --------------------------------------------------------------------------- */

/* Each builder appends the nodes of one layer to g and returns the id of its result, or -1
 * with g->error set ("file:line:col: ..."). Weight leaves get IR_NODE_TRAINABLE and the name
 * NAME.weight / NAME.bias (timm's). Intermediate nodes are named after the layer. Shapes:
 * B batch, N tokens, D embedding dim, K classes. */

/* timm's DeiT initialization: trunc_normal(std=0.02) for linear and patch projections and the
 * cls/dist/pos tokens, zeros for biases, ones for LayerNorm scales. (timm keeps PyTorch's
 * default uniform init for the patch convolution; we use the truncated normal there too.) */
#define FE_INIT_STD 0.02

/* Trainable f32 WEIGHT leaf, initialized as `init` (std for IR_INIT_TRUNC_NORMAL) when no
 * weights file gives it. */
int fe_weight(ir_graph *g, const char *name, int ndim, const int64_t *shape, ir_init init,
              double std, ir_loc loc);
/* x [...,in] -> x @ W^T + b: [...,out]. W [out,in] NAME.weight, b [out] NAME.bias. */
int fe_linear(ir_graph *g, int x, int64_t in, int64_t out, int bias, const char *name, ir_loc loc);
/* x [...,D] -> layer_norm over the last dim; NAME.weight, NAME.bias [D]. */
int fe_layer_norm(ir_graph *g, int x, int64_t dim, double eps, const char *name, ir_loc loc);
/* timm Attention: x [B,N,D] -> qkv linear -> heads -> softmax(q k^T / sqrt(hd)) v -> proj. */
int fe_attention(ir_graph *g, int x, int64_t dim, int64_t heads, int qkv_bias, const char *name,
                 ir_loc loc);
/* timm Mlp: x [B,N,D] -> fc1 [.., hidden] -> GELU (erf, or tanh if gelu_tanh) -> fc2 [.., D]. */
int fe_mlp(ir_graph *g, int x, int64_t dim, int64_t hidden, int gelu_tanh, const char *name,
           ir_loc loc);
/* timm PatchEmbed: images [B,C,H,W] -> PATCHIFY [B,Np,C*P*P] -> @ W^T + b -> [B,Np,D].
 * NAME.proj.weight [D,C,P,P] (reshaped to [D,C*P*P] in the graph), NAME.proj.bias [D]. */
int fe_patch_embed(ir_graph *g, int images, int64_t in_chans, int64_t patch, int64_t dim,
                   const char *name, ir_loc loc);
/* Learned tokens put in front of x [B,N,D] in the order given (timm: cls_token, then
 * dist_token for distilled models): each WEIGHT [1,1,D] -> EXPAND [B,1,D]; one CONCAT on
 * axis 1 -> [B,ntokens+N,D]. */
int fe_prepend_tokens(ir_graph *g, int x, const char *const *names, int ntokens, ir_loc loc);
/* x [B,N,D] + WEIGHT NAME [1,N,D]. */
int fe_pos_embed(ir_graph *g, int x, const char *name, ir_loc loc);
/* x [B,N,D] -> token `index`: SLICE on axis 1 -> RESHAPE [B,D]. */
int fe_select_token(ir_graph *g, int x, int64_t index, const char *name, ir_loc loc);
/* Distilled DeiT at eval: x [B,N,D] -> (head(x[:,0]) + head_dist(x[:,1])) / 2 -> [B,K].
 * Used for training too (both heads learn the label; no teacher), which keeps it simple. */
int fe_distilled_head(ir_graph *g, int x, int64_t num_classes, const char *head,
                      const char *head_dist, ir_loc loc);

/* ---- onnx.c (only with DEITC_HAVE_ONNX) ------------------------------------------------- */

/* Same contract as fe_load_model, for an ONNX file; the initializers become WEIGHT leaves. */
int fe_onnx_load(const char *path, const fe_define *defines, int ndefines, int64_t batch,
                 ir_graph **out, char *err, size_t errsize);
/* Same, from the bytes of an ONNX file in memory (fuzzing, tests); `path` names the source in
 * messages and locates external data files. */
int fe_onnx_load_buffer(const void *data, size_t len, const char *path, const fe_define *defines,
                        int ndefines, int64_t batch, ir_graph **out, char *err, size_t errsize);

/* ---- onnx_scan.c (only with DEITC_HAVE_ONNX) -------------------------------------------- */

/* Checks an ONNX file's bytes before they are unpacked: messages nested at most 64 deep, at
 * most 2^20 messages or strings in any one repeated field, and what unpacking allocates
 * (estimated from above) at most 4 times the file plus 64 MiB. 0 when fine or malformed (the
 * unpacker reports that); -1 with the reason (no file name) in why. */
int fe_onnx_scan(const void *data, size_t len, char *why, size_t whysize);

/* ---- onnx_names.c ----------------------------------------------------------------------- */

/* On the ONNX reader's forward graph g: when it is a timm VisionTransformer, names its weights
 * as timm does (blocks.0.attn.qkv.weight) with Linear weights as [out, in], keeping each
 * initializer's name and layout in src_name / src_layout; weights it cannot name are listed in
 * g->info.note. Returns the graph (g, or a rebuilt one with g freed); NULL with err on an
 * internal error (g freed). */
ir_graph *fe_onnx_timm_names(ir_graph *g, char *err, size_t errsize);

/* ---- onnx_export.c ---------------------------------------------------------------------- */

/* Writes ONNX model `model` to `out` with each initializer named in the safetensors file
 * `weights` replaced by that tensor (same shape and dtype; values inline). A name that is the
 * output of an Identity node of an initializer (torch's deduplicated initializers, which the
 * reader trains as weights of their own) becomes a new initializer in the Identity's place,
 * untying it. Initializers the
 * file lacks keep their values; a tensor the model lacks is an error (except `deitc run`'s
 * "losses" and "grad.*"). `out` is written whole or not at all. Returns the number of
 * initializers replaced, or -1 with a message in err (also for YAML models, and without
 * DEITC_HAVE_ONNX). */
int fe_onnx_export(const char *model, const char *weights, const char *out, char *err, size_t errsize);

#endif
