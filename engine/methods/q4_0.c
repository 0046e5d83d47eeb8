// methods/q4_0.c — placeholder until the method lands.
#include "methods.h"
KVQ_METHOD_STUB(q4_0, "q4_0")
