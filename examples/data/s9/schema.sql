-- The S9 legacy schema, as the sample INSERTs imply it (s9-sample-data.sql).
-- Like many legacy systems it declares no foreign keys: orphans are possible and the
-- migration's validation looks for them.

CREATE TABLE compradores (
    id_comprador        integer PRIMARY KEY,
    nome                varchar(200) NOT NULL,
    nome_fantasia       varchar(200),
    cnpj                varchar(20),
    email               varchar(200),
    telefone            varchar(30),
    celular             varchar(30),
    endereco            varchar(300),
    bairro              varchar(100),
    cidade              varchar(100),
    estado              char(2),
    cep                 varchar(10),
    pais                char(2),
    status              char(1) NOT NULL,
    limite_credito      numeric(14,2),
    prazo_pagamento     integer,
    contato_nome        varchar(200),
    contato_email       varchar(200),
    contato_telefone    varchar(30),
    inscricao_estadual  varchar(30),
    observacoes         text,
    data_cadastro       timestamp NOT NULL,
    usuario_cadastro    varchar(200),
    data_atualizacao    timestamp,
    usuario_atualizacao varchar(200)
);

CREATE TABLE produtores (
    id_produtor         integer PRIMARY KEY,
    nome                varchar(200) NOT NULL,
    nome_fantasia       varchar(200),
    cnpj                varchar(20),
    email               varchar(200),
    telefone            varchar(30),
    celular             varchar(30),
    endereco            varchar(300),
    bairro              varchar(100),
    cidade              varchar(100),
    estado              char(2),
    cep                 varchar(10),
    pais                char(2),
    status              char(1) NOT NULL,
    categorias_produtos varchar(500),
    contato_nome        varchar(200),
    contato_email       varchar(200),
    contato_telefone    varchar(30),
    inscricao_estadual  varchar(30),
    banco               varchar(5),
    banco_nome          varchar(100),
    agencia             varchar(20),
    conta               varchar(20),
    tipo_conta          varchar(2),
    observacoes         text,
    data_cadastro       timestamp NOT NULL,
    usuario_cadastro    varchar(200),
    data_atualizacao    timestamp,
    usuario_atualizacao varchar(200)
);

CREATE TABLE vendas (
    id_venda            integer PRIMARY KEY,
    id_comprador        integer NOT NULL,
    id_produtor         integer NOT NULL,
    data_venda          timestamp NOT NULL,
    data_entrega        timestamp,
    data_nota           timestamp,
    status              varchar(20) NOT NULL,
    prazo_pagamento     integer,
    quantidade_total    numeric(14,3),
    preco_unitario      numeric(14,2),
    subtotal            numeric(14,2),
    desconto            numeric(14,2),
    imposto             numeric(14,2),
    valor_total         numeric(14,2),
    moeda               char(3),
    numero_nota         varchar(30),
    chave_nota          varchar(44),
    observacoes         text,
    data_cadastro       timestamp NOT NULL,
    usuario_cadastro    varchar(200),
    data_atualizacao    timestamp,
    usuario_atualizacao varchar(200)
);

CREATE TABLE linhas_venda (
    id_linha            integer PRIMARY KEY,
    id_venda            integer NOT NULL,
    numero_linha        integer NOT NULL,
    codigo_produto      varchar(30),
    nome_produto        varchar(200),
    descricao_produto   text,
    quantidade          numeric(14,3),
    unidade             varchar(5),
    preco_unitario      numeric(14,2),
    subtotal            numeric(14,2),
    desconto            numeric(14,2),
    imposto             numeric(14,2),
    total               numeric(14,2),
    percentual_desconto numeric(5,2),
    percentual_imposto  numeric(5,2),
    observacoes         text,
    data_cadastro       timestamp NOT NULL,
    data_atualizacao    timestamp
);
CREATE INDEX linhas_venda_id_venda ON linhas_venda (id_venda);

CREATE TABLE certificacoes (
    id_certificacao     integer PRIMARY KEY,
    id_produtor         integer NOT NULL,
    tipo                varchar(30) NOT NULL,
    numero              varchar(30),
    emissor             varchar(50),
    validade            date
);
