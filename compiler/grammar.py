"""Lark grammar of the ACF IR text (kept in Python so it ships with the package).

Generic and custom op forms, with an optional source location::

    %r = "graph.matmul"(%a, %b) {transpose_b = true} : (tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32> loc("model.py":12:5 layer "fc1")
    %r = graph.matmul %a, %b {transpose_b = true} : tensor<4x8xf32>, tensor<16x8xf32> -> tensor<4x16xf32>
"""

GRAMMAR = r"""
start: toplevel*
?toplevel: alias_def | func

alias_def: ENC_ALIAS "=" encoding
func: FUNC_KW SYMBOL "(" [func_arg ("," func_arg)*] ")" ["->" func_results] "{" operation* "}" [location]
func_arg: VALUE_ID ":" type [attr_dict]
func_results: "(" [type_list] ")" | type

operation: [result_names "="] (generic_body | custom_body) [location]
result_names: VALUE_ID ("," VALUE_ID)*
generic_body: STRING "(" [value_list] ")" [regions] [attr_dict] ":" "(" [type_list] ")" "->" result_types
custom_body: OP_NAME [value_list] [attr_dict] [":" operand_types ["->" result_types]]
operand_types: type_list | "(" ")"
result_types: type_list | "(" [type_list] ")"
regions: "(" region ("," region)* ")"
region: "{" operation* "}"
value_list: VALUE_ID ("," VALUE_ID)*
type_list: type ("," type)*

location: LOC_OPEN STRING ":" INT ":" INT [LAYER_KW STRING] ")"

type: TENSOR_HEAD ["," encoding_ref] ">"   -> tensor_type
    | SCALAR                              -> scalar_type
?encoding_ref: ENC_ALIAS -> alias_ref
             | encoding
encoding: SPARSE_OPEN "{" MAP_KW "=" "(" NAME ("," NAME)* ")" "->" "(" level ("," level)* ")" "}" ">"
level: level_expr ":" level_type
level_expr: NAME [LEVEL_OP INT]
level_type: NAME ["(" NAME ")"]
          | STRUCTURED_KW "[" INT "," INT "]"

attr_dict: "{" [attr_entry ("," attr_entry)*] "}"
attr_entry: NAME "=" attr_value
?attr_value: INT -> int_attr
           | FLOAT -> float_attr
           | BOOL -> bool_attr
           | STRING -> str_attr
           | "[" [attr_value ("," attr_value)*] "]" -> list_attr
           | DENSE_OPEN dense_literal ">" ":" type -> dense_attr
?dense_literal: number
              | "[" [dense_literal ("," dense_literal)*] "]" -> dense_list
?number: INT -> int_attr
       | FLOAT -> float_attr
       | BOOL -> bool_attr

FUNC_KW: "graph.func"
MAP_KW: "map"
LAYER_KW: "layer"
STRUCTURED_KW: "structured"
LEVEL_OP: "floordiv" | "mod"
BOOL.2: "true" | "false"
SPARSE_OPEN.2: "#sparse<"
DENSE_OPEN.2: "dense<"
LOC_OPEN.2: "loc("
TENSOR_HEAD.2: /tensor<[^\s,<>]*/
SCALAR: "f32" | "i64" | "i1" | "index"
ENC_ALIAS: /#[A-Za-z_][A-Za-z0-9_$.]*/
VALUE_ID: /%[A-Za-z0-9_$.]+/
SYMBOL: /@[A-Za-z_][A-Za-z0-9_$.]*/
OP_NAME: /[a-z_][a-z0-9_]*\.[a-z0-9_.]+/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
FLOAT.2: /-?(\d+\.\d*([eE][-+]?\d+)?|\d+[eE][-+]?\d+|inf)|nan/
INT: /-?\d+/
STRING: /"([^"\\\n]|\\.)*"/

COMMENT: /\/\/[^\n]*/
%import common.WS
%ignore WS
%ignore COMMENT
"""
