// methods/rabitq.c — placeholder until the method lands.
#include "methods.h"
KVQ_METHOD_STUB(rabitq, "rabitq")
