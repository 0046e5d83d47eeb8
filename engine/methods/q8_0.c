// methods/q8_0.c — placeholder until the method lands.
#include "methods.h"
KVQ_METHOD_STUB(q8_0, "q8_0")
