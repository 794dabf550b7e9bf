/* instruct.h: sf-train's world instruction model (instruct.c), the small
 * LLaMA that the corpus phase samples captions from. */
#ifndef SF_TRAIN_INSTRUCT_H
#define SF_TRAIN_INSTRUCT_H

#include "trainer/data.h"

/* Trains c->out/instruct-world (an HF LLaMA folder with its tokenizer.model)
 * unless its stamp is up to date, and writes c->out/instruct.quality.json. */
int sf_train_instruct(sf_train_ctx_t *c);

#endif
