/* The subset of onnxruntime-genai's C API that main.c calls, declared here because the Python
 * wheel ships the library (libonnxruntime-genai.so) but not its header (ort_genai_c.h ships in the
 * NuGet and release archives). The declarations match the library of onnxruntime-genai 0.18.0 and
 * are checked by running them (tests/test_native_c_example.py); with the release archive at hand,
 * include its ort_genai_c.h instead of this file.
 *
 * Conventions of the API: a call that can fail returns an OgaResult* (NULL = success; otherwise the
 * error, read with OgaResultGetError and freed with OgaDestroyResult); every object made by an
 * OgaCreate* call is freed by its OgaDestroy* call; strings the library returns are freed with
 * OgaDestroyString. The API is not thread safe. */
#ifndef EDGESEQ_OGA_API_H
#define EDGESEQ_OGA_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct OgaResult OgaResult;
typedef struct OgaConfig OgaConfig;
typedef struct OgaModel OgaModel;
typedef struct OgaTokenizer OgaTokenizer;
typedef struct OgaSequences OgaSequences;
typedef struct OgaGeneratorParams OgaGeneratorParams;
typedef struct OgaGenerator OgaGenerator;

/* Errors and strings */
const char* OgaResultGetError(const OgaResult* result);
void OgaDestroyResult(OgaResult* result);
void OgaDestroyString(const char* str);
void OgaShutdown(void);  /* once, at exit, after every object is destroyed */

/* Config: the folder's genai_config.json, with JSON overlaid on it (e.g. session options) */
OgaResult* OgaCreateConfig(const char* config_path, OgaConfig** out);
OgaResult* OgaConfigOverlay(OgaConfig* config, const char* json);
void OgaDestroyConfig(OgaConfig* config);

/* Model */
OgaResult* OgaCreateModel(const char* config_path, OgaModel** out);
OgaResult* OgaCreateModelFromConfig(const OgaConfig* config, OgaModel** out);
void OgaDestroyModel(OgaModel* model);

/* Tokenizer (reads the tokenizer files in the model folder) and token sequences */
OgaResult* OgaCreateTokenizer(const OgaModel* model, OgaTokenizer** out);
void OgaDestroyTokenizer(OgaTokenizer* tokenizer);
/* Options by name, e.g. "add_special_tokens" = "true" (off by default): add the BOS token where the
 * folder's tokenizer_config.json says add_bos_token, as the model's own tokenizer does. */
OgaResult* OgaUpdateTokenizerOptions(OgaTokenizer* tokenizer, const char* const* keys, const char* const* values,
                                     size_t count);
OgaResult* OgaTokenizerGetBosTokenId(const OgaTokenizer* tokenizer, int32_t* out);
OgaResult* OgaCreateSequences(OgaSequences** out);
void OgaDestroySequences(OgaSequences* sequences);
OgaResult* OgaTokenizerEncode(const OgaTokenizer* tokenizer, const char* text, OgaSequences* sequences);
size_t OgaSequencesGetSequenceCount(const OgaSequences* sequences, size_t sequence_index);
const int32_t* OgaSequencesGetSequenceData(const OgaSequences* sequences, size_t sequence_index);
OgaResult* OgaTokenizerDecode(const OgaTokenizer* tokenizer, const int32_t* tokens, size_t count,
                              const char** out_text);

/* Search options (e.g. "max_length" = prompt + new tokens, "do_sample") */
OgaResult* OgaCreateGeneratorParams(const OgaModel* model, OgaGeneratorParams** out);
void OgaDestroyGeneratorParams(OgaGeneratorParams* params);
OgaResult* OgaGeneratorParamsSetSearchNumber(OgaGeneratorParams* params, const char* name, double value);
OgaResult* OgaGeneratorParamsSetSearchBool(OgaGeneratorParams* params, const char* name, bool value);

/* Generator: the caller owns the token loop */
OgaResult* OgaCreateGenerator(const OgaModel* model, const OgaGeneratorParams* params, OgaGenerator** out);
void OgaDestroyGenerator(OgaGenerator* generator);
OgaResult* OgaGenerator_AppendTokens(OgaGenerator* generator, const int32_t* ids, size_t count);
bool OgaGenerator_IsDone(const OgaGenerator* generator);
OgaResult* OgaGenerator_GenerateNextToken(OgaGenerator* generator);
/* The newest token of each sequence (count = batch size); valid until the next generator call. */
OgaResult* OgaGenerator_GetNextTokens(const OgaGenerator* generator, const int32_t** out, size_t* count);

#ifdef __cplusplus
}
#endif

#endif
