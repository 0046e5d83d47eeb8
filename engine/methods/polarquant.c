// methods/polarquant.c — placeholder until the method lands.
#include "methods.h"
KVQ_METHOD_STUB(polarquant, "polarquant")
