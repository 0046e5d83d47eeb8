// methods/fp16.c — placeholder until the method lands.
#include "methods.h"
KVQ_METHOD_STUB(fp16, "fp16")
