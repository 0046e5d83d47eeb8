// test_tok.c — engine/tok on small hand-written tokenizer.json files: BPE
// rank order and leftmost ties, no merges, byte fallback, fuse_unk, added
// tokens (longest match, lstrip/rstrip), invalid UTF-8, the pattern
// rewrites (ASCII-only (?i:), \s as White_Space), Metaspace, Digits, NFC,
// TemplateProcessing, decoding, and load errors.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "test_util.h"
#include "tok/tok.h"

static char dir[256];

static int setup(void **st)
{
    (void)st;
    return tu_tmpdir_new(dir, sizeof dir, "tok");
}

static int teardown(void **st)
{
    (void)st;
    return tu_rm_rf(dir);
}

// Write json as dir/NAME.json and load it.
static kvq_status load(const char *name, const char *json, kvq_tok **t)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s.json", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    return kvq_tok_load(p, t);
}

// Encode text; ids written to out (at most 64), count returned.
static int enc(kvq_tok *t, const char *text, bool special, int32_t *out)
{
    int32_t *ids;
    int n;
    assert_int_equal(kvq_tok_encode(t, text, strlen(text), special, &ids, &n), KVQ_OK);
    assert_true(n <= 64);
    memcpy(out, ids, sizeof *ids * (size_t)n);
    free(ids);
    return n;
}

#define EXPECT_IDS(t, text, special, ...)                                          \
    do {                                                                           \
        const int32_t want_[] = {__VA_ARGS__};                                     \
        int32_t got_[64];                                                          \
        int n_ = enc(t, text, special, got_);                                      \
        assert_int_equal(n_, (int)(sizeof want_ / sizeof want_[0]));               \
        for (int i_ = 0; i_ < n_; i_++) assert_int_equal(got_[i_], want_[i_]);     \
    } while (0)

static void test_bpe_rank_and_ties(void **st)
{
    (void)st;
    kvq_tok *t;
    // "b c" outranks "a b": abc -> a + bc; "a a" applies leftmost first: aaa -> aa + a.
    assert_int_equal(load("rank", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, "
                                  "\"bc\": 3, \"ab\": 4, \"aa\": 5}, \"merges\": [\"b c\", \"a b\", \"a a\"]}}", &t),
                     KVQ_OK);
    EXPECT_IDS(t, "abc", true, 0, 3);
    EXPECT_IDS(t, "aaa", true, 5, 0);
    EXPECT_IDS(t, "abab", true, 4, 4);
    kvq_tok_free(t);
}

static void test_no_merges(void **st)
{
    (void)st;
    kvq_tok *t;
    // Regression: an empty merge list left the pair table unallocated and encode crashed.
    assert_int_equal(load("nomerge", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": []}}", &t),
                     KVQ_OK);
    EXPECT_IDS(t, "abba", true, 0, 1, 1, 0);
    kvq_tok_free(t);
}

static void test_byte_fallback_and_unk(void **st)
{
    (void)st;
    kvq_tok *t;
    assert_int_equal(load("fb", "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"byte_fallback\": true, "
                                "\"fuse_unk\": true, \"vocab\": {\"<unk>\": 0, \"a\": 1, \"<0xC3>\": 2, \"<0xA9>\": 3}, "
                                "\"merges\": []}}", &t),
                     KVQ_OK);
    EXPECT_IDS(t, "a\xc3\xa9", true, 1, 2, 3);    // é -> its two byte tokens
    EXPECT_IDS(t, "a\xe2\x82\xac\xe2\x82\xac", true, 1, 0);   // €€: bytes missing -> unk, fused into one
    kvq_tok_free(t);
    // No unk_token: unknown characters vanish (as in tokenizers.js).
    assert_int_equal(load("nounk", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", &t), KVQ_OK);
    EXPECT_IDS(t, "a?a", true, 0, 0);
    kvq_tok_free(t);
}

static void test_added_tokens(void **st)
{
    (void)st;
    kvq_tok *t;
    assert_int_equal(load("added", "{\"added_tokens\": [{\"id\": 10, \"content\": \"<a>\", \"special\": true}, "
                                   "{\"id\": 11, \"content\": \"<ab>\", \"special\": true, \"lstrip\": true, \"rstrip\": true}],"
                                   "\"model\": {\"type\": \"BPE\", \"vocab\": {\"<\": 0, \"a\": 1, \"b\": 2, \">\": 3, \" \": 4, \"x\": 5}, "
                                   "\"merges\": []}}", &t),
                     KVQ_OK);
    EXPECT_IDS(t, "<a><ab><a", true, 10, 11, 0, 1);   // longest match; "<a" alone is text
    EXPECT_IDS(t, "x  <ab>  x", true, 5, 11, 5);      // lstrip/rstrip eat the spaces around
    EXPECT_IDS(t, "x <a> x", true, 5, 4, 10, 4, 5);
    kvq_tok_free(t);
}

static void test_invalid_utf8(void **st)
{
    (void)st;
    kvq_tok *t;
    assert_int_equal(load("fffd", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"\\ufffd\": 1}, \"merges\": []}}", &t),
                     KVQ_OK);
    EXPECT_IDS(t, "a\xff" "a", true, 0, 1, 0);
    EXPECT_IDS(t, "\xe2\x82" "a", true, 1, 0);   // a truncated sequence is one U+FFFD (maximal subpart)
    EXPECT_IDS(t, "\xed\xa0\x80", true, 1, 1, 1);   // a surrogate's bytes: three
    kvq_tok_free(t);
}

static void test_pattern_rewrites(void **st)
{
    (void)st;
    kvq_tok *t;
    // ignore_merges makes each piece one id when it is in the vocabulary, so the ids show the split.
    assert_int_equal(load("re", "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(?i:'s)|\\\\s+|[^\\\\s']+\"}, "
                                "\"behavior\": \"Isolated\"}, \"model\": {\"type\": \"BPE\", \"ignore_merges\": true, "
                                "\"vocab\": {\"'\": 0, \"s\": 1, \"S\": 2, \"'s\": 3, \"'S\": 4, \"\\u017f\": 5, \"x\": 6, "
                                "\"\\u0085\": 7, \"x\\ufeffx\": 8, \" \": 9}, \"merges\": []}}", &t),
                     KVQ_OK);
    EXPECT_IDS(t, "'s'S", true, 3, 4);
    EXPECT_IDS(t, "'\xc5\xbf", true, 0, 5);                 // ASCII-only folding: 'ſ is not 's
    EXPECT_IDS(t, "x\xc2\x85x\xef\xbb\xbfx", true, 6, 7, 8);   // U+0085 is a space, U+FEFF is not
    kvq_tok_free(t);
}

static void test_metaspace_digits_nfc(void **st)
{
    (void)st;
    kvq_tok *t;
    assert_int_equal(load("ms", "{\"added_tokens\": [{\"id\": 9, \"content\": \"<s>\", \"special\": true}], "
                                "\"normalizer\": {\"type\": \"NFC\"}, "
                                "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Metaspace\", "
                                "\"replacement\": \"\\u2581\", \"prepend_scheme\": \"first\"}, {\"type\": \"Digits\", "
                                "\"individual_digits\": true}]}, \"model\": {\"type\": \"BPE\", \"ignore_merges\": true, "
                                "\"vocab\": {\"\\u2581\": 0, \"1\": 1, \"2\": 2, \"\\u2581a\": 3, \"a\": 4, \"\\u00e9\": 5, "
                                "\"\\u2581\\u00e9\": 6}, \"merges\": []}}", &t),
                     KVQ_OK);
    // Only the first section gets the prefix; then each digit is its own piece.
    EXPECT_IDS(t, "a12", true, 3, 1, 2);
    EXPECT_IDS(t, "<s>a", true, 9, 4);
    EXPECT_IDS(t, "a<s>a", true, 3, 9, 4);
    EXPECT_IDS(t, "e\xcc\x81", true, 6);   // NFC: e + combining acute -> é
    kvq_tok_free(t);
}

static void test_template_and_decode(void **st)
{
    (void)st;
    kvq_tok *t;
    assert_int_equal(load("sp", "{\"added_tokens\": [{\"id\": 1, \"content\": \"<s>\", \"special\": true}], "
                                "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"\\u2581\"}, "
                                "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"}]}, "
                                "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, "
                                "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]}, "
                                "\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"\\u2581\"}, "
                                "\"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]}, "
                                "\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"\\u2581\": 2, \"h\": 3, \"i\": 4, "
                                "\"\\u2581h\": 5, \"\\u2581hi\": 6, \"<0xC3>\": 7, \"<0xA9>\": 8}, \"merges\": [\"\\u2581 h\", \"\\u2581h i\"]}}", &t),
                     KVQ_OK);
    assert_int_equal(kvq_tok_bos(t), 1);
    EXPECT_IDS(t, "hi hi\xc3\xa9", true, 1, 6, 6, 7, 8);
    EXPECT_IDS(t, "hi", false, 6);
    const int32_t ids[] = {6, 6, 7, 8};
    char *text;
    size_t len;
    assert_int_equal(kvq_tok_decode(t, ids, 4, &text, &len), KVQ_OK);
    assert_string_equal(text, "hi hi\xc3\xa9");   // leading space stripped once; bytes joined
    free(text);
    char piece[16];
    assert_int_equal(kvq_tok_piece(t, 6, false, piece, sizeof piece), 3);   // streaming: " hi"
    assert_memory_equal(piece, " hi", 3);
    assert_int_equal(kvq_tok_decode(t, (const int32_t[]){99}, 1, &text, &len), KVQ_ERR_ARG);
    kvq_tok_free(t);
}

static void test_byte_level_round_trip(void **st)
{
    (void)st;
    // GPT-2 byte stand-ins as ids 0..255 (id = byte), one merge "Ġ t" + "Ġt h"... kept small.
    char *json = malloc(1 << 16);
    assert_non_null(json);
    int at = sprintf(json, "{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true}, "
                           "\"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {");
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        at += sprintf(json + at, "\"\\u%04x\": %d, ", keep ? (unsigned)b : next++, b);
    }
    sprintf(json + at, "\"\\u0120t\": 256}, \"merges\": [\"\\u0120 t\"]}}");
    kvq_tok *t;
    assert_int_equal(load("bl", json, &t), KVQ_OK);
    free(json);
    const char *text = "to  be\n\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9 at";
    int32_t *ids;
    int n;
    assert_int_equal(kvq_tok_encode(t, text, strlen(text), true, &ids, &n), KVQ_OK);
    assert_int_equal(ids[0], 256);   // add_prefix_space: " to" -> "Ġt" + "o"
    assert_int_equal(ids[1], 'o');
    char *back;
    size_t len;
    assert_int_equal(kvq_tok_decode(t, ids, n, &back, &len), KVQ_OK);
    assert_int_equal(len, strlen(text) + 1);
    assert_memory_equal(back, " ", 1);
    assert_memory_equal(back + 1, text, strlen(text));
    free(back);
    free(ids);
    kvq_tok_free(t);
}

static void test_load_errors(void **st)
{
    (void)st;
    kvq_tok *t = (kvq_tok *)1;
    assert_int_equal(load("e1", "{\"normalizer\": {\"type\": \"BertNormalizer\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {}, "
                                "\"merges\": []}}", &t),
                     KVQ_ERR_UNSUPPORTED);
    assert_null(t);
    assert_non_null(strstr(kvq_last_error(), "normalizer.type \"BertNormalizer\" is not supported"));
    assert_int_equal(load("e2", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}", &t), KVQ_ERR_FORMAT);
    assert_non_null(strstr(kvq_last_error(), "model.vocab[\"a\"]: expected an integer id"));
    assert_int_equal(load("e3", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}", &t),
                     KVQ_ERR_FORMAT);
    assert_non_null(strstr(kvq_last_error(), "id 0 is given to two different tokens"));
    assert_int_equal(load("e4", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}", &t),
                     KVQ_ERR_FORMAT);
    assert_non_null(strstr(kvq_last_error(), "model.merges[0]"));
    assert_int_equal(load("e5", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, "
                                "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"[\\\\S]\"}}}", &t),
                     KVQ_ERR_UNSUPPORTED);
    assert_int_equal(kvq_tok_load("/nonexistent/tok", &t), KVQ_ERR_IO);
    assert_false(kvq_tok_present("/nonexistent"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bpe_rank_and_ties),
        cmocka_unit_test(test_no_merges),
        cmocka_unit_test(test_byte_fallback_and_unk),
        cmocka_unit_test(test_added_tokens),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_pattern_rewrites),
        cmocka_unit_test(test_metaspace_digits_nfc),
        cmocka_unit_test(test_template_and_decode),
        cmocka_unit_test(test_byte_level_round_trip),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
