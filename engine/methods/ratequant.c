// methods/ratequant.c — placeholder until the method lands.
#include "methods.h"
KVQ_METHOD_STUB(ratequant, "ratequant")
