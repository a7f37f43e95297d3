/* generate: open an edgeseq artifact (exported with --native ortgenai) in onnxruntime-genai and
 * continue a prompt greedily, the way an app embeds it.
 *
 *   generate [--threads N] [--ids] [--ignore-eos] ARTIFACT_DIR PROMPT [MAX_NEW_TOKENS]
 *
 * PROMPT is text (tokenized by the runtime's tokenizer, from the artifact's tokenizer files), or
 * with --ids a list of token ids ("1 2 3" or "1,2,3"). Prints the new token ids on one line, then
 * their text. Stops at MAX_NEW_TOKENS (default 32) or at the model's end-of-sequence token (never,
 * with --ignore-eos: the end token is then never chosen, a forced length as in benchmarks). Any
 * error is one line on stderr and exit status 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oga_api.h"

enum { MAX_IDS = 4096 };

/* Print the API's error as one line and free it. */
static int report(OgaResult* result) {
  fputs("error: ", stderr);
  for (const char* c = OgaResultGetError(result); *c; c++) fputc(*c == '\n' || *c == '\r' ? ' ' : *c, stderr);
  fputc('\n', stderr);
  OgaDestroyResult(result);
  return 1;
}

/* Run one API call; on failure report it and jump to the clean-up at the end of main. */
#define CHECK(call)                   \
  do {                                \
    OgaResult* result_ = (call);      \
    if (result_) {                    \
      status = report(result_);       \
      goto done;                      \
    }                                 \
  } while (0)

/* "1 2 3" or "1,2,3" -> ids; the count, or -1 when the text is not a list of ids. */
static long parse_ids(const char* text, int32_t* ids, long capacity) {
  long n = 0;
  for (const char* p = text; *p;) {
    if (*p == ' ' || *p == ',') { p++; continue; }
    char* end;
    long id = strtol(p, &end, 10);
    if (end == p || id < 0 || n == capacity) return -1;
    ids[n++] = (int32_t)id;
    p = end;
  }
  return n > 0 ? n : -1;
}

int main(int argc, char** argv) {
  int threads = 0, as_ids = 0, ignore_eos = 0, arg = 1;
  for (; arg < argc && strncmp(argv[arg], "--", 2) == 0; arg++) {
    if (strcmp(argv[arg], "--ids") == 0) as_ids = 1;
    else if (strcmp(argv[arg], "--ignore-eos") == 0) ignore_eos = 1;
    else if (strcmp(argv[arg], "--threads") == 0 && arg + 1 < argc) threads = atoi(argv[++arg]);
    else break;
  }
  if (argc - arg < 2 || argc - arg > 3) {
    fprintf(stderr, "usage: %s [--threads N] [--ids] [--ignore-eos] ARTIFACT_DIR PROMPT [MAX_NEW_TOKENS]\n",
            argv[0]);
    return 2;
  }
  const char* folder = argv[arg];
  const char* prompt = argv[arg + 1];
  long max_new = argc - arg == 3 ? strtol(argv[arg + 2], NULL, 10) : 32;
  if (max_new < 1 || max_new > MAX_IDS) {
    fprintf(stderr, "error: MAX_NEW_TOKENS must be 1..%d, not %s\n", MAX_IDS, argv[arg + 2]);
    return 2;
  }
  static int32_t prompt_ids[MAX_IDS], new_ids[MAX_IDS];
  long n_prompt = 0, n_new = 0;
  if (as_ids && (n_prompt = parse_ids(prompt, prompt_ids, MAX_IDS)) < 0) {
    fprintf(stderr, "error: --ids wants token ids such as \"1 2 3\", not \"%s\"\n", prompt);
    return 2;
  }

  int status = 0;
  OgaConfig* config = NULL;
  OgaModel* model = NULL;
  OgaTokenizer* tokenizer = NULL;
  OgaSequences* encoded = NULL;
  OgaGeneratorParams* params = NULL;
  OgaGenerator* generator = NULL;
  const char* text = NULL;
  const int32_t* ids = prompt_ids;
  int32_t bos = 0;
  char json[200];  /* the session options overlaid on genai_config.json */
  int n = snprintf(json, sizeof json, "{\"model\": {\"decoder\": {\"session_options\": {\"log_severity_level\": 4");
  if (threads > 0) n += snprintf(json + n, sizeof json - n, ", \"intra_op_num_threads\": %d", threads);
  snprintf(json + n, sizeof json - n, "}}}}");

  /* The folder's genai_config.json names the graph, its inputs and the cache layout; session options
   * are overlaid on it: threads, and onnxruntime's own log quiet (its errors come back as OgaResult). */
  CHECK(OgaCreateConfig(folder, &config));
  CHECK(OgaConfigOverlay(config, json));
  CHECK(OgaCreateModelFromConfig(config, &model));
  CHECK(OgaCreateTokenizer(model, &tokenizer));

  if (!as_ids) {
    /* BOS as the model's tokenizer adds it (the runtime's default adds no special token). */
    const char* keys[] = {"add_special_tokens"};
    const char* values[] = {"true"};
    CHECK(OgaUpdateTokenizerOptions(tokenizer, keys, values, 1));
    CHECK(OgaCreateSequences(&encoded));
    CHECK(OgaTokenizerEncode(tokenizer, prompt, encoded));
    n_prompt = (long)OgaSequencesGetSequenceCount(encoded, 0);
    ids = OgaSequencesGetSequenceData(encoded, 0);
    /* A prompt that starts with the BOS text (a chat template's) would get a second one; keep one, as
     * edgeseq's encode does. */
    CHECK(OgaTokenizerGetBosTokenId(tokenizer, &bos));
    if (n_prompt > 1 && ids[0] == bos && ids[1] == bos) ids++, n_prompt--;
  }

  /* Greedy search; max_length counts the prompt too, and no end token is chosen before min_length. */
  CHECK(OgaCreateGeneratorParams(model, &params));
  CHECK(OgaGeneratorParamsSetSearchNumber(params, "max_length", (double)(n_prompt + max_new)));
  if (ignore_eos) CHECK(OgaGeneratorParamsSetSearchNumber(params, "min_length", (double)(n_prompt + max_new)));
  CHECK(OgaGeneratorParamsSetSearchBool(params, "do_sample", false));
  CHECK(OgaCreateGenerator(model, params, &generator));
  CHECK(OgaGenerator_AppendTokens(generator, ids, (size_t)n_prompt));

  /* The token loop an app owns: one new id per step, e.g. to stream its text. */
  while (n_new < max_new && !OgaGenerator_IsDone(generator)) {
    const int32_t* next;
    size_t count;
    CHECK(OgaGenerator_GenerateNextToken(generator));
    CHECK(OgaGenerator_GetNextTokens(generator, &next, &count));
    new_ids[n_new++] = next[0];
  }

  CHECK(OgaTokenizerDecode(tokenizer, new_ids, (size_t)n_new, &text));
  for (long i = 0; i < n_new; i++) printf(i ? " %d" : "%d", new_ids[i]);
  printf("\n%s\n", text);

done:
  if (text) OgaDestroyString(text);
  if (generator) OgaDestroyGenerator(generator);
  if (params) OgaDestroyGeneratorParams(params);
  if (encoded) OgaDestroySequences(encoded);
  if (tokenizer) OgaDestroyTokenizer(tokenizer);
  if (model) OgaDestroyModel(model);
  if (config) OgaDestroyConfig(config);
  OgaShutdown();
  return status;
}
