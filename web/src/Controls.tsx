import {
  Button,
  DescriptionListDescription,
  DescriptionListGroup,
  DescriptionListTerm,
  Flex,
  Form,
  FormGroup,
  TextInput,
} from '@patternfly/react-core';
import { useState } from 'react';

/** One text field and its button (a new snapshot's name, a new disk's size); emptied once taken. */
export function OneField(props: {
  id: string;
  label: string;
  button: string;
  busy: boolean;
  submit: (value: string) => Promise<boolean>;
}) {
  const [value, setValue] = useState('');
  return (
    <Form
      onSubmit={(e) => {
        e.preventDefault();
        void props.submit(value).then((taken) => taken && setValue(''));
      }}
    >
      <Flex alignItems={{ default: 'alignItemsFlexEnd' }}>
        <FormGroup label={props.label} fieldId={props.id}>
          <TextInput id={props.id} value={value} onChange={(_e, v) => setValue(v)} />
        </FormGroup>
        <Button type="submit" isDisabled={!value || props.busy} isLoading={props.busy}>
          {props.button}
        </Button>
      </Flex>
    </Form>
  );
}

/** A table row's action, named with what it acts on for screen readers ("Remove disk1"). */
export function RowButton(props: {
  label: string;
  on: string;
  onClick: () => void;
  isDisabled: boolean;
  danger?: boolean;
  /** Why it is disabled, shown on hover. */
  title?: string;
}) {
  return (
    <Button
      size="sm"
      variant={props.danger ? 'danger' : 'secondary'}
      isDisabled={props.isDisabled}
      aria-label={`${props.label} ${props.on}`}
      title={props.title}
      onClick={props.onClick}
    >
      {props.label}
    </Button>
  );
}

/** One term and its value in a DescriptionList. */
export function Term({ term, value }: { term: string; value: string | number }) {
  return (
    <DescriptionListGroup>
      <DescriptionListTerm>{term}</DescriptionListTerm>
      <DescriptionListDescription>{value}</DescriptionListDescription>
    </DescriptionListGroup>
  );
}
