//! Stateful consumers (`funnelhub process`): dedupe, funnel stages and conversion matching,
//! each replay-safe with durable state. Issues #5 and #6.
