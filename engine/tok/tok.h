// tok.h — Hugging Face tokenizer.json tokenizers (BPE: byte-level as in
// GPT-2, Llama 3, Qwen2/3; SentencePiece-style with byte fallback as in
// Llama 2, Mistral, Gemma), encode and decode, no Python.
//
// Pipeline of encode, in the order tokenizers.js runs it (the reference the
// tests compare against): added tokens (non-normalized ones) are cut out of
// the raw text first; each remaining section is normalized, normalized added
// tokens are cut out of it, the rest is pre-tokenized into pieces and each
// piece goes through BPE; the post-processor (TemplateProcessing) adds BOS/EOS
// when add_special is true.
//
// Supported parts (anything else is refused at load with KVQ_ERR_UNSUPPORTED
// naming the JSON field):
//   normalizer:    NFC, Replace, Prepend, Sequence
//   pre_tokenizer: Split (String or Regex through PCRE2), ByteLevel,
//                  Metaspace, Digits, Sequence
//   model:         BPE (merges in "a b" or ["a","b"] form, byte_fallback,
//                  fuse_unk, ignore_merges, unk_token)
//   post_processor: TemplateProcessing, ByteLevel, Sequence of those
//   decoder:       ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace,
//                  Sequence
// Text is UTF-8; invalid sequences are read as U+FFFD (as a WHATWG decoder
// does), so any byte string encodes.
#ifndef KVQ_TOK_H
#define KVQ_TOK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvq.h"

typedef struct kvq_tok kvq_tok;

// path: a tokenizer.json file, or a directory holding one. A
// tokenizer_config.json next to it (optional) names bos_token/eos_token;
// its add_bos_token/add_eos_token are not applied (tokenizers.js does not
// apply them either): the post-processor decides what encode adds.
// *out owned by the caller (kvq_tok_free). Not safe to share between
// threads: encode keeps a word cache.
kvq_status kvq_tok_load(const char *path, kvq_tok **out);
void kvq_tok_free(kvq_tok *t);

// Whether dir holds a tokenizer.json (the model runner's test for "use it").
bool kvq_tok_present(const char *dir);

int kvq_tok_vocab_size(const kvq_tok *t);   // largest id + 1 (vocab and added tokens)
int32_t kvq_tok_bos(const kvq_tok *t);      // -1 when none
int32_t kvq_tok_eos(const kvq_tok *t);      // -1 when none

// Encode len bytes of UTF-8 text. add_special: apply the post-processor's
// special tokens (BOS). *ids malloc'd (caller frees), *n its length (may be 0).
kvq_status kvq_tok_encode(kvq_tok *t, const char *text, size_t len, bool add_special, int32_t **ids, int *n);

// The vocabulary string of id (as in tokenizer.json, e.g. "Ġthe", "▁the",
// "<0x0A>"), its byte length in *len; NULL when id is outside the vocabulary.
const char *kvq_tok_token(const kvq_tok *t, int32_t id, size_t *len);

// Text of ids through the decoder chain. *text malloc'd, NUL-terminated,
// *len bytes (may hold invalid UTF-8 when ids split a character).
kvq_status kvq_tok_decode(const kvq_tok *t, const int32_t *ids, int n, char **text, size_t *len);

// Bytes one token contributes when streaming (generate): the decoder chain
// on a single token; `first` applies the decoder's leading Strip. Writes at
// most cap bytes to buf and returns the full length (>= cap: truncated).
size_t kvq_tok_piece(const kvq_tok *t, int32_t id, bool first, char *buf, size_t cap);
#endif
